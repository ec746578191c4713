//! Outbound TCP for a session: socket options (TCP MD5, TTL / multihop, GTSM), source
//! address, connect with a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpSocket;

use super::driver::{Connecting, PeerConfig};
use super::sockopt;

pub(crate) fn connect_future(config: &PeerConfig) -> Connecting {
    let config = config.clone();
    Box::pin(async move {
        let peer = SocketAddr::new(config.peer_addr, config.peer_port);
        let socket = if peer.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        prepare_socket(&socket, &config, peer.is_ipv6())?;
        if let Some(src) = config.source_addr {
            socket.bind(SocketAddr::new(src, 0))?;
        }
        let timeout = config.session.connect_retry.max(Duration::from_secs(1));
        match tokio::time::timeout(timeout, socket.connect(peer)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        }
    })
}

fn prepare_socket(socket: &TcpSocket, config: &PeerConfig, ipv6: bool) -> std::io::Result<()> {
    let sock = socket2::SockRef::from(socket);
    if let Some(pw) = &config.password {
        sockopt::set_md5_key(socket, config.peer_addr, pw.as_bytes())?;
    }
    let ttl = u32::from(config.send_ttl());
    if ipv6 {
        sock.set_unicast_hops_v6(ttl)?;
    } else {
        sock.set_ttl_v4(ttl)?;
    }
    if let Some(min) = config.min_ttl() {
        sockopt::set_min_ttl(socket, ipv6, min)?;
    }
    Ok(())
}

//! A session's transport: its configuration ([`PeerConfig`]) and outbound TCP with the
//! socket options it asks for (TCP MD5, TTL / multihop, GTSM), source address, connect with
//! a timeout. The driver uses this module; this module knows nothing of the driver.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use super::fsm::SessionConfig;
use super::sockopt;

/// A connection attempt in flight.
pub(crate) type Connecting =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<TcpStream>> + Send>>;

/// TCP port of BGP (RFC 4271 §8.2.1).
pub const BGP_PORT: u16 = 179;

/// Transport and session configuration of one peer (runtime config, built from the
/// `BGPPeer` resource or standalone YAML by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The session's protocol settings.
    pub session: SessionConfig,
    /// Peer address.
    pub peer_addr: IpAddr,
    /// Peer TCP port.
    pub peer_port: u16,
    /// Local address to connect from.
    pub source_addr: Option<IpAddr>,
    /// TCP MD5 password (RFC 2385), at most 80 bytes.
    pub password: Option<String>,
    /// eBGP multihop: TTL of our packets (eBGP default 1, iBGP 64).
    pub ttl: Option<u8>,
    /// GTSM (RFC 5082): send with TTL 255 and drop packets below `256 - hops`, where hops is
    /// `ttl` (default 1).
    pub gtsm: bool,
    /// Wait after a route change before converging, to coalesce bursts.
    pub coalesce: Duration,
}

impl PeerConfig {
    /// A configuration with defaults: port 179, no password, 5 ms coalescing.
    pub fn new(session: SessionConfig, peer_addr: IpAddr) -> Self {
        Self {
            session,
            peer_addr,
            peer_port: BGP_PORT,
            source_addr: None,
            password: None,
            ttl: None,
            gtsm: false,
            coalesce: Duration::from_millis(5),
        }
    }

    /// The TTL our packets are sent with: 255 with GTSM, else `ttl`, else 64 for iBGP and 1
    /// for eBGP.
    pub fn send_ttl(&self) -> u8 {
        if self.gtsm {
            255
        } else if let Some(ttl) = self.ttl {
            ttl
        } else if self.session.ibgp() {
            64
        } else {
            1
        }
    }

    /// With GTSM, the lowest TTL accepted (`256 - hops`); `None` without.
    pub fn min_ttl(&self) -> Option<u8> {
        self.gtsm
            .then(|| 255u8.saturating_sub(self.ttl.unwrap_or(1).saturating_sub(1)))
    }
}

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

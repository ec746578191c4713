//! The BGP listener: only started when a peer is passive or listening is enabled, so that by
//! default Herald never binds port 179 and can run beside a CNI's BGP daemon.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::driver::PeerHandle;
use super::error::SessionError;
use super::sockopt;

/// Accepts BGP connections and hands each to the task of the peer it comes from; connections
/// from unknown addresses are closed. Only started when a peer is passive or listening is
/// enabled: by default Herald does not bind port 179, so it can run beside a CNI's BGP daemon.
#[derive(Debug)]
pub struct Listener {
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Binds `addr` and serves `peers`; TCP MD5 keys of the peers are set on the listening
    /// socket (RFC 2385 §3 requires the key before the SYN arrives).
    pub fn bind(addr: SocketAddr, peers: &[&PeerHandle]) -> Result<Self, SessionError> {
        let io = |what: &'static str| {
            move |source: std::io::Error| SessionError::Io {
                peer: addr.ip(),
                what,
                source,
            }
        };
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(io("listen socket"))?;
        socket.set_reuseaddr(true).map_err(io("listen socket"))?;
        for p in peers {
            if let Some(pw) = p.password() {
                sockopt::set_md5_key(&socket, p.peer(), pw.as_bytes())
                    .map_err(io("tcp md5 key"))?;
            }
        }
        socket.bind(addr).map_err(io("bind"))?;
        let listener: TcpListener = socket.listen(64).map_err(io("listen"))?;
        let local = listener.local_addr().map_err(io("listen"))?;
        let routes: HashMap<IpAddr, mpsc::Sender<TcpStream>> =
            peers.iter().map(|p| (p.peer(), p.inbound())).collect();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, from)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let from = match from.ip() {
                    IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
                    v4 => v4,
                };
                match routes.get(&from) {
                    Some(tx) => {
                        let _ = tx.try_send(stream);
                    }
                    None => tracing::info!(%from, "closing bgp connection from unknown peer"),
                }
            }
        });
        Ok(Self { local, task })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

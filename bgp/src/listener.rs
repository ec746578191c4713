//! The BGP listener: only started when a peer is passive or listening is enabled, so that by
//! default Herald never binds port 179 and can run beside a CNI's BGP daemon.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::driver::PeerHandle;
use super::error::SessionError;
use super::sockopt;

/// Where accepted connections go: the inbound channel of each served peer.
type Routes = Arc<Mutex<HashMap<IpAddr, mpsc::Sender<TcpStream>>>>;

/// Accepts BGP connections and hands each to the task of the peer it comes from; connections
/// from unknown addresses are closed. Only started when a peer is passive or listening is
/// enabled: by default Herald does not bind port 179, so it can run beside a CNI's BGP daemon.
///
/// The socket stays bound while the set of peers changes ([`Listener::serve`]): keys and
/// routes are updated in place, so a configuration change never races a rebind of the port
/// and never resets connections waiting in the accept queue.
#[derive(Debug)]
pub struct Listener {
    local: SocketAddr,
    socket: Arc<TcpListener>,
    routes: Routes,
    /// The MD5 keys installed on the socket, by the address the kernel knows the peer by.
    keys: HashMap<IpAddr, String>,
    /// The accept loop; `None` only inside [`Listener::close`].
    task: Option<JoinHandle<()>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Listener {
    /// Binds `addr` and serves `peers`; TCP MD5 keys of the peers are set on the listening
    /// socket before it listens (RFC 2385 §3 requires the key before the SYN arrives).
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
        let keys = wanted_keys(addr, peers);
        for (key_addr, (peer, pw)) in &keys {
            set_key(&socket, *key_addr, *peer, pw)?;
        }
        socket.bind(addr).map_err(io("bind"))?;
        let listener = Arc::new(socket.listen(64).map_err(io("listen"))?);
        let local = listener.local_addr().map_err(io("listen"))?;
        let routes: Routes = Arc::new(Mutex::new(routes_of(peers)));
        let task = tokio::spawn(accept_loop(listener.clone(), routes.clone()));
        Ok(Self {
            local,
            socket: listener,
            routes,
            keys: keys.into_iter().map(|(a, (_, pw))| (a, pw)).collect(),
            task: Some(task),
        })
    }

    /// Serves `peers` from now on, on the same socket: installs the keys of new or changed
    /// passwords, removes those of peers gone, and routes connections to the new set. On an
    /// error the keys installed so far stay and the routes are not changed.
    pub fn serve(&mut self, peers: &[&PeerHandle]) -> Result<(), SessionError> {
        let wanted = wanted_keys(self.local, peers);
        let gone: Vec<IpAddr> = self
            .keys
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for key_addr in gone {
            set_key(&*self.socket, key_addr, key_addr, "")?;
            self.keys.remove(&key_addr);
        }
        for (key_addr, (peer, pw)) in wanted {
            if self.keys.get(&key_addr) != Some(&pw) {
                set_key(&*self.socket, key_addr, peer, &pw)?;
                self.keys.insert(key_addr, pw);
            }
        }
        *self.routes.lock().unwrap_or_else(|e| e.into_inner()) = routes_of(peers);
        Ok(())
    }

    /// Stops accepting and waits until the socket is closed, so the port can be bound again.
    pub async fn close(mut self) {
        let task = self.task.take();
        // Our handle on the socket goes with `self`, the accept loop's with its task.
        drop(self);
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// The keys `peers` want on a socket bound to `local`, by the address the kernel knows each
/// peer by: a dual-stack (IPv6) socket sees IPv4 peers as `::ffff:a.b.c.d` and refuses an
/// IPv4 key (EINVAL), so those get the mapped address. Values: the peer and its password.
fn wanted_keys(local: SocketAddr, peers: &[&PeerHandle]) -> HashMap<IpAddr, (IpAddr, String)> {
    peers
        .iter()
        .filter_map(|p| {
            let pw = p.password()?;
            let key_addr = match p.peer() {
                IpAddr::V4(a) if !local.is_ipv4() => IpAddr::V6(a.to_ipv6_mapped()),
                other => other,
            };
            Some((key_addr, (p.peer(), pw.to_owned())))
        })
        .collect()
}

/// Installs (or with an empty password, removes) one key, naming the peer in the error.
fn set_key(
    socket: &impl AsRawFd,
    key_addr: IpAddr,
    peer: IpAddr,
    password: &str,
) -> Result<(), SessionError> {
    sockopt::set_md5_key(socket, key_addr, password.as_bytes()).map_err(|source| SessionError::Io {
        peer,
        what: "tcp md5 key on the listener",
        source,
    })
}

fn routes_of(peers: &[&PeerHandle]) -> HashMap<IpAddr, mpsc::Sender<TcpStream>> {
    peers.iter().map(|p| (p.peer(), p.inbound())).collect()
}

async fn accept_loop(listener: Arc<TcpListener>, routes: Routes) {
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let from = match from.ip() {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
            v4 => v4,
        };
        let tx = routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&from)
            .cloned();
        match tx {
            Some(tx) => {
                let _ = tx.try_send(stream);
            }
            None => tracing::info!(%from, "closing bgp connection from unknown peer"),
        }
    }
}

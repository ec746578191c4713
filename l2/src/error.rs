//! Errors of the layer-2 drivers.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Why a layer-2 driver could not do its job. Variants name the interface, peer or file.
#[derive(Debug, Error)]
pub enum L2Error {
    /// The interface does not exist or has no Ethernet address.
    #[error("interface {interface}: {reason}")]
    Interface {
        /// Interface name.
        interface: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Opening or binding a socket on an interface failed.
    #[error("socket on interface {interface}: {source}")]
    Socket {
        /// Interface name.
        interface: String,
        /// The system error.
        source: io::Error,
    },
    /// The gossip UDP socket could not be opened.
    #[error("gossip socket on {addr}: {source}")]
    GossipSocket {
        /// Local address.
        addr: std::net::SocketAddr,
        /// The system error.
        source: io::Error,
    },
    /// The gossip key file is unreadable or has the wrong length.
    #[error("gossip key {path}: {reason}")]
    Key {
        /// Key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The rtnetlink connection for link events failed.
    #[error("link watcher: {0}")]
    Netlink(String),
}

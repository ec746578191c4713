//! Errors of the BGP module.

use std::net::IpAddr;

use thiserror::Error;

/// A message could not be encoded. Herald only builds messages it can encode, so this points
/// at a bug; the session closes with a Cease rather than panicking.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The message would exceed 4096 bytes.
    #[error("bgp message of {len} bytes exceeds 4096")]
    TooLong {
        /// Encoded length.
        len: usize,
    },
    /// The codec library refused the message.
    #[error("bgp encoding failed: {0}")]
    Library(String),
}

/// Errors of a session driver, each naming the peer.
#[derive(Debug, Error)]
pub enum SessionError {
    /// Setting up or using the TCP connection failed.
    #[error("bgp peer {peer}: {what}: {source}")]
    Io {
        /// Peer address.
        peer: IpAddr,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration cannot work (for example a password longer than 80 bytes).
    #[error("bgp peer {peer}: {reason}")]
    Config {
        /// Peer address.
        peer: IpAddr,
        /// What is wrong.
        reason: String,
    },
}

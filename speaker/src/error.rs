//! Errors of the speaker crate.
//!
//! Cores return these; drivers translate them exactly once (to a metric label, a log line with
//! the peer address, a Kubernetes Event).

use std::net::IpAddr;

use thiserror::Error;

/// Why a received BFD Control packet was discarded by the decoder (RFC 5880 §6.8.6, the checks
/// that need only the packet itself).
///
/// The decoder does not know the peer; the UDP driver adds the source address when it logs or
/// counts the error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BfdPacketError {
    /// Fewer bytes than the fixed header needs to read version and length.
    #[error("bfd packet truncated: {len} bytes")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// Version field other than 1.
    #[error("bfd version {version} not supported")]
    Version {
        /// Version found in the packet.
        version: u8,
    },
    /// Length field below 24 (26 when the A bit is set).
    #[error("bfd length {length} below minimum {minimum}")]
    LengthTooSmall {
        /// Length field.
        length: u8,
        /// Minimum for this packet.
        minimum: u8,
    },
    /// Length field larger than the UDP payload.
    #[error("bfd length {length} exceeds payload of {payload} bytes")]
    LengthExceedsPayload {
        /// Length field.
        length: u8,
        /// Bytes received.
        payload: usize,
    },
    /// Detect Mult field is zero.
    #[error("bfd detect multiplier is zero")]
    ZeroDetectMult,
    /// Multipoint (M) bit set; reserved for point-to-multipoint extensions.
    #[error("bfd multipoint bit set")]
    Multipoint,
    /// My Discriminator field is zero.
    #[error("bfd my discriminator is zero")]
    ZeroMyDiscriminator,
    /// Authentication Present (A) bit set; Herald runs BFD without authentication, and RFC 5880
    /// §6.8.6 requires discarding such packets when bfd.AuthType is zero.
    #[error("bfd authentication not supported")]
    AuthenticationUnsupported,
}

/// Why a Maglev table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TableError {
    /// The table size is not a prime (this includes 0 and 1), so some permutations would not
    /// cover the table.
    #[error("maglev table size {size} is not a prime")]
    NotPrime {
        /// The rejected size.
        size: u32,
    },
    /// The table size is above [`MAX_TABLE_SIZE`](crate::dataplane::maglev::MAX_TABLE_SIZE).
    #[error("maglev table size {size} exceeds the maximum {max}")]
    TooLarge {
        /// The rejected size.
        size: u32,
        /// The largest accepted size.
        max: u32,
    },
    /// No backend has a non-zero weight. There is no table to build: the caller decides what
    /// the VIP does with no backend (the table's length invariant would otherwise break).
    #[error("no backend with a non-zero weight")]
    NoBackends,
    /// Two backends share a key; they would get identical permutations and an order that
    /// depends on the input.
    #[error("backend key {key} appears more than once")]
    DuplicateKey {
        /// The repeated key.
        key: IpAddr,
    },
    /// Two backends share an id, so the table could not tell them apart.
    #[error("backend id {id} appears more than once")]
    DuplicateId {
        /// The repeated id.
        id: u32,
    },
}

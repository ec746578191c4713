//! Errors of the BFD library.

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

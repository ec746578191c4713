//! herald-speaker: makes allocated addresses reachable (BGP, BFD, ARP/NDP, XDP).
//!
//! # Layout
//! - [`bfd`]: BFD core (RFC 5880/5881/5883): Control packet codec, sans-IO session state
//!   machine, port and TTL rules. No sockets; a UDP driver wraps it.
//! - [`error`]: the crate's error types.
//!
//! The BGP, layer-2 and dataplane modules arrive with their issues.

pub mod bfd;
pub mod error;

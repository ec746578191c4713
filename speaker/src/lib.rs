//! herald-speaker: makes allocated addresses reachable (BGP, BFD, ARP/NDP, XDP).
//!
//! # Layout
//! - [`bfd`]: BFD core (RFC 5880/5881/5883): Control packet codec, sans-IO session state
//!   machine, port and TTL rules. No sockets; a UDP driver wraps it.
//! - [`dataplane`]: what user space computes for the XDP fast path (weighted Maglev tables).
//! - [`l2`]: layer-2 announcement: ARP/NDP responders on raw sockets, owner election, SWIM
//!   gossip (foca), link-state gating; wired per node by `l2::agent`.
//! - [`error`]: the crate's error types.
//!
//! The BGP module and the drivers (sockets, timers) arrive with their issues.

pub mod bfd;
pub mod dataplane;
pub mod error;
pub mod l2;

//! Layer-2 announcement (DESIGN §5): answering ARP and NDP for the addresses this node owns,
//! and announcing them on takeover.
//!
//! # Layout
//! - [`packet`]: parses ARP requests and neighbour solicitations, builds ARP replies,
//!   gratuitous ARP and neighbour advertisements. Pure: no sockets.
//! - [`election`]: pure owner election (rendezvous hash over live, eligible nodes).

pub mod election;
pub mod packet;

//! Layer-2 announcement (DESIGN §5): answering ARP and NDP for the addresses this node owns,
//! and announcing them on takeover.
//!
//! # Layout
//! - [`agent`]: wires link watcher, gossip, election and responder for one node.
//! - [`packet`]: parses ARP requests and neighbour solicitations, builds ARP replies,
//!   gratuitous ARP and neighbour advertisements. Pure: no sockets.
//! - [`election`]: pure owner election (rendezvous hash over live, eligible nodes).
//! - [`gossip`]: SWIM liveness (foca) over authenticated UDP, and each node's link facts.
//! - [`interfaces`]: interface name patterns and the interfaces left out by default.
//! - [`link`]: which interfaces are up with carrier, from rtnetlink link events.
//! - [`responder`]: the driver answering ARP/NDP on raw sockets, level-triggered `set`.
//! - [`takeover`]: timing takeovers from a lost owner to the first announcement (metrics).
//! - [`error`]: errors of the drivers.
//! - [`raw`]: `AF_PACKET` sockets (the only `unsafe`: `sockaddr_ll`, reactor registration).

pub mod agent;
pub mod election;
pub mod error;
pub mod gossip;
pub mod interfaces;
pub mod link;
pub mod packet;
pub mod raw;
pub mod responder;
pub mod takeover;

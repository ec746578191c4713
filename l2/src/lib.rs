//! herald-l2: layer-2 announcement (DESIGN §5) as a library: answering ARP and NDP for the
//! addresses this node owns, announcing them (gratuitous ARP, unsolicited neighbour
//! advertisements) on takeover, and agreeing with the other nodes which node owns which.
//!
//! Two ways in, both level-triggered:
//! - [`responder::Responder`]: give it the whole desired set (address → interfaces) with
//!   [`Responder::set`](responder::Responder::set); it answers on raw sockets and announces
//!   what is new. No election: for a daemon that already knows what it owns.
//! - [`agent::Agent`]: give it every address and where it may be announced
//!   ([`Agent::set_policies`](agent::Agent::set_policies)); it gossips with the other agents
//!   (SWIM over authenticated UDP), elects an owner per address and drives its responder.
//!   Out: [`Agent::owned`](agent::Agent::owned) (what this node announces now) and the
//!   per-interface counters.
//!
//! It is not a Kubernetes component and knows nothing of Services or pools: `herald-speaker`
//! turns those into policies. It does not add addresses to interfaces; the kernel's own ARP
//! for them is the caller's business (the speaker keeps VIPs on `lo` with `arp_ignore`).
//! `examples/l2-agent.rs` is one node, its addresses and interfaces given on the command line;
//! several on one segment elect an owner per address and take over from each other.
//!
//! # Layout
//! - [`agent`]: wires link watcher, gossip, election and responder for one node.
//! - [`packet`]: parses ARP requests and neighbour solicitations, builds ARP replies,
//!   gratuitous ARP and neighbour advertisements. Pure: no sockets.
//! - [`election`]: pure owner election (rendezvous hash over live, eligible nodes).
//! - [`gossip`]: SWIM liveness (foca) over authenticated UDP, and each node's link facts, on
//!   a thread of its own.
//! - [`interfaces`]: interface name patterns and the interfaces left out by default.
//! - [`link`]: which interfaces are up with carrier, from rtnetlink link events.
//! - [`responder`]: the driver answering ARP/NDP on raw sockets, level-triggered `set`.
//! - [`takeover`]: timing takeovers from a lost owner to the first announcement (metrics).
//! - [`error`]: errors of the drivers.
//! - [`raw`]: `AF_PACKET` sockets (`unsafe`: `sockaddr_ll`, reactor registration).
//! - [`sched`]: real-time scheduling of the gossip thread (`unsafe`: `sched_setscheduler`).

pub mod agent;
pub mod election;
pub mod error;
pub mod gossip;
pub mod interfaces;
pub mod link;
pub mod packet;
pub mod raw;
pub mod responder;
pub mod sched;
pub mod takeover;

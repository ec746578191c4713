//! herald-speaker: makes allocated addresses reachable (BGP, BFD, ARP/NDP, XDP). The
//! composition of the protocol libraries (`herald-bgp`, `herald-bfd`, `herald-l2`), the
//! allocator (`herald-ipam`, for standalone mode) and the dataplane (`herald-dataplane`): it decides
//! what this node should announce and hands each library its desired set. It holds no
//! protocol code of its own, and it does not allocate in a cluster (the controller does).
//!
//! # Layout
//! - [`announce`]: pure: from configuration, Services, endpoints and nodes to this node's
//!   desired routes, layer-2 candidacies and dataplane VIPs.
//! - [`admin`]: the admin HTTP server (`/metrics`, `/healthz`, `/readyz`, `/status`).
//! - [`bgp`]: the `herald-bgp` library, re-exported (BGP-4 codec, FSM, Adj-RIB-Out, driver).
//! - [`bfd`]: the `herald-bfd` library, re-exported (RFC 5880/5881/5883); [`coupling`]: a
//!   BFD session gating its BGP session.
//! - [`cluster`]: cluster mode: watches the API server, feeds the engine, reports per Service.
//! - [`dataplane`]: the `herald-dataplane` library, re-exported (Maglev tables, map
//!   programming, next-hop neighbours, decap).
//! - [`drain`]: taking the node out of service on purpose (GRACEFUL_SHUTDOWN, then withdraw).
//! - [`engine`]: the per-node machinery every mode drives: snapshot of objects and granted
//!   addresses -> announce -> BGP sessions, layer-2 agent, dataplane.
//! - [`metrics`]: Prometheus metrics, all named `herald_*`.
//! - [`peers`]: the BGP sessions of this node, reconciled with the configuration.
//! - [`status`]: the `/status` document and its table rendering.
//! - [`standalone`]: standalone mode: persisted state, the embedded allocator.
//! - [`l2`]: the `herald-l2` library, re-exported: ARP/NDP responders on raw sockets, owner
//!   election, SWIM gossip (foca), link-state gating; wired per node by `l2::agent`.

pub mod admin;
pub mod announce;
/// BFD: the `herald-bfd` library, under the path callers have used.
pub use herald_bfd as bfd;
/// BGP: the `herald-bgp` library, under the path callers have used.
pub use herald_bgp as bgp;
pub mod cluster;
pub mod coupling;
/// The dataplane: the `herald-dataplane` library, under the path callers have used.
pub use herald_dataplane as dataplane;
pub mod drain;
pub mod engine;
/// Layer 2: the `herald-l2` library, under the path callers have used.
pub use herald_l2 as l2;
pub mod memory;
pub mod metrics;
pub mod peers;
pub mod standalone;
pub mod status;

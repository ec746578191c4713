//! Dataplane: the state the XDP fast path reads (DESIGN §6), computed in user space.
//!
//! # Layout
//! - [`maglev`]: builds the weighted Maglev lookup table per VIP that the XDP program indexes
//!   by flow hash to pick a backend for a new flow. Pure: no maps, no I/O.
//! - [`program`]: plans the map writes for a desired set of VIPs (stable ids, table per VIP,
//!   safe write order). Pure.
//! - [`nexthop`]: which neighbour entries the backends' next hops need and what to change in
//!   the kernel's neighbour table for them (managed entries Herald marks as its own). Pure.
//! - [`neighbours`]: the task that looks the next hops up (rtnetlink routes) and keeps their
//!   neighbour entries, so `bpf_fib_lookup` in the XDP program finds them resolved.
//! - [`driver`]: loads and attaches the XDP balancer and the decapsulation program, carries
//!   plans out, binds VIPs to `lo` on backend hosts, runs the neighbour keeper.

pub mod driver;
pub mod maglev;
pub mod neighbours;
pub mod nexthop;
pub mod program;

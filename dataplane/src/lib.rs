//! herald-dataplane: the user-space half of the XDP fast path (DESIGN §6). Give the
//! [`driver::Dataplane`] the whole desired set of [`Vip`]s (level-triggered); it plans and
//! writes the maps the programs of `herald-ebpf` read, keeps the backends' next hops resolved,
//! and on backend hosts binds the VIPs to `lo` and decapsulates.
//!
//! It is not the eBPF programs (those and their loader are `herald-ebpf`) and decides nothing
//! about Services: `herald-speaker` computes the VIPs and their weighted backends; another
//! daemon can drive the fast path with this crate alone.
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
//! - [`error`]: why a Maglev table cannot be built.

pub mod driver;
pub mod error;
pub mod maglev;
pub mod neighbours;
pub mod nexthop;
pub mod program;

use std::net::IpAddr;

use herald_ipam::Protocol;

/// One VIP of the dataplane: what the speaker wants the XDP balancer to serve.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Vip {
    /// Address.
    pub address: IpAddr,
    /// Port (0 never appears: Services always list ports).
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Backend hosts with weights, sorted by address.
    pub backends: Vec<(IpAddr, u32)>,
    /// The Service (`namespace/name`) this VIP serves.
    pub service: String,
}

//! Dataplane: the state the XDP fast path reads (DESIGN §6), computed in user space.
//!
//! # Layout
//! - [`maglev`]: builds the weighted Maglev lookup table per VIP that the XDP program indexes
//!   by flow hash to pick a backend for a new flow. Pure: no maps, no I/O.
//! - [`program`]: plans the map writes for a desired set of VIPs (stable ids, table per VIP,
//!   safe write order). Pure.
//! - [`driver`]: loads and attaches the XDP balancer and the decapsulation program, carries
//!   plans out, binds VIPs to `lo` on backend hosts.

pub mod driver;
pub mod maglev;
pub mod program;

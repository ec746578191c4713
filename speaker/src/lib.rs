//! herald-speaker: makes allocated addresses reachable (BGP, BFD, ARP/NDP, XDP).
//!
//! # Layout
//! - [`dataplane`]: what user space computes for the XDP fast path (weighted Maglev tables).
//! - [`l2`]: layer-2 announcement (ARP and NDP packet parsing and building).
//!
//! The BGP and BFD modules arrive with their issues.

pub mod dataplane;
pub mod l2;

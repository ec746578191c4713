//! herald-speaker: makes allocated addresses reachable (BGP, BFD, ARP/NDP, XDP).
//!
//! # Layout
//! - [`dataplane`]: what user space computes for the XDP fast path (weighted Maglev tables).
//!
//! The BGP, BFD and layer-2 modules arrive with their issues.

pub mod dataplane;

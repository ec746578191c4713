//! herald-speaker: makes allocated addresses reachable (BGP, BFD, ARP/NDP, XDP).
//!
//! # Layout
//! Nothing yet: the BGP, BFD, layer-2 and dataplane modules arrive with their issues.

//! Dataplane: the state the XDP fast path reads (DESIGN §6), computed in user space.
//!
//! # Layout
//! - [`maglev`]: builds the weighted Maglev lookup table per VIP that the XDP program indexes
//!   by flow hash to pick a backend for a new flow. Pure: no maps, no I/O.

pub mod maglev;

//! herald-bgp: a BGP-4 speaker (RFC 4271) as a library: message codec glue over
//! `netgauze-bgp-pkt`, the sans-IO session state machine, the Adj-RIB-Out with UPDATE packing,
//! and the tokio driver that connects it all to TCP. Give a [`driver::PeerHandle`] its whole
//! desired route set (level-triggered, [`driver::PeerHandle::set_routes`]); read its status.
//!
//! It is an announcer, not a router: received routes are counted, not installed; there is no
//! policy language and no best-path selection. `herald-speaker` composes it with BFD, layer 2
//! and the dataplane; a CNI or another daemon can embed it alone, as `examples/bgp-speaker.rs`
//! does (a small daemon configured by a file).
//!
//! # Layout
//! - [`attrs`]: RFC 7606 on the path attribute framing, before netgauze reads an UPDATE.
//! - [`codec`]: framing, encode/decode, RFC 7606 classification, NOTIFICATION helpers.
//! - [`config`]: runtime configuration of a session.
//! - [`route`]: the caller's desired routes and their attributes.
//! - [`rib_out`]: Adj-RIB-Out and the diff to a desired set.
//! - [`pack`]: UPDATE building (packing, attributes, End-of-RIB).
//! - [`fsm`]: the session state machine (RFC 4271 §8).
//! - [`driver`]: the tokio task per peer (TCP, timers, coalescing).
//! - [`listener`]: accepts connections for passive peers (off by default).
//! - `transport`: a session's transport configuration (`PeerConfig`, re-exported by `driver`) and
//!   outbound connections with their socket options; it does not know the driver.
//! - [`sockopt`]: TCP MD5 and GTSM socket options (the module's only unsafe code).
//! - [`error`]: errors of this crate.

pub mod attrs;
pub mod codec;
pub mod config;
pub mod driver;
pub mod error;
pub mod fsm;
pub mod listener;
pub mod pack;
pub mod rib_out;
pub mod route;
pub mod sockopt;
mod transport;

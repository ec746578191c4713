//! herald-bfd: Bidirectional Forwarding Detection, asynchronous mode (RFC 5880), over UDP
//! single-hop (RFC 5881) and multihop (RFC 5883), as a library: give a [`driver::BfdHandle`]
//! the peer, the local address and a [`profile::Profile`]; watch its state.
//!
//! It is not tied to BGP: `herald-speaker` couples a session to its BGP session
//! (`herald_speaker::coupling`); another daemon can use the state for anything else, as
//! `examples/bfd-session.rs` does (one session from the command line, state changes printed).
//!
//! # Layout
//!
//! Sans-IO, by module:
//! - [`packet`]: Control packet codec and the packet-only reception checks.
//! - [`profile`]: what the user configured (`BFDProfile`).
//! - [`session`]: the per-peer state machine, fed with packets, timer expiries, admin and
//!   profile changes plus the current time; returns packets to send, state changes and
//!   deadlines. Also the demultiplexing rule.
//! - [`transport`]: UDP ports and the TTL rules.
//!
//! I/O, in [`driver`]: the UDP task per session (sockets, clock, TTL checks).
//! Errors: [`error`].
//!
//! Not supported: authentication (packets with the A bit are rejected), Demand mode, the Echo
//! function.

pub mod driver;
pub mod error;
pub mod packet;
pub mod profile;
pub mod session;
pub mod transport;

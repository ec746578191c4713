//! Bidirectional Forwarding Detection, asynchronous mode (RFC 5880), over UDP single-hop
//! (RFC 5881) and multihop (RFC 5883).
//!
//! Sans-IO: [`packet`] turns bytes into [`packet::ControlPacket`]s and back, [`session`] is
//! the per-peer state machine fed with packets, timer expiries and configuration and returning
//! packets to send, state changes and deadlines; [`transport`] holds the port and TTL rules.
//! The UDP driver (sockets, clock, discriminator table) is separate and owns all I/O.
//!
//! Not supported: authentication (packets with the A bit are rejected), Demand mode, the Echo
//! function.

pub mod packet;
pub mod profile;
pub mod session;
pub mod transport;

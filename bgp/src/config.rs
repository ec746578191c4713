//! Runtime configuration of a BGP session (built by callers from the `BGPPeer` resource or
//! standalone YAML; kept apart from the CRD types).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// What the session was configured with (runtime config, apart from the CRD types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our AS.
    pub local_asn: u32,
    /// The peer's AS; an OPEN with another AS is refused (Bad Peer AS).
    pub peer_asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Hold time we offer, seconds (0 or at least 3, RFC 4271 §4.2).
    pub hold_time: u16,
    /// Keepalive interval we want, seconds; `None`: a third of the negotiated hold time.
    pub keepalive: Option<u16>,
    /// First connect-retry interval; doubles on each failure up to
    /// [`MAX_CONNECT_RETRY`](crate::fsm::MAX_CONNECT_RETRY).
    pub connect_retry: Duration,
    /// Only wait for the peer to connect (never connect out).
    pub passive: bool,
    /// Graceful restart restart time in seconds (RFC 4724); `None`: capability not sent.
    pub graceful_restart: Option<u16>,
    /// NEXT_HOP for IPv4 routes; `None`: the session's local address when it is IPv4.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop for IPv6 routes; `None`: the session's local address when it is IPv6; on an
    /// IPv4 session IPv6 routes are then not sent (an IPv4-mapped next hop is unusable).
    pub next_hop_v6: Option<Ipv6Addr>,
    /// The session waits for BFD Up before connecting (a BFD session is configured).
    pub bfd: bool,
    /// Received prefixes kept for counting; above this the session ends with Cease
    /// "maximum number of prefixes reached" (RFC 4486), so a peer cannot grow our memory.
    pub max_received: usize,
}

impl SessionConfig {
    /// A configuration with Herald's defaults: hold 90 s, connect retry 5 s, graceful
    /// restart 120 s, up to 1M received prefixes counted.
    pub fn new(local_asn: u32, peer_asn: u32, router_id: Ipv4Addr) -> Self {
        Self {
            local_asn,
            peer_asn,
            router_id,
            hold_time: 90,
            keepalive: None,
            connect_retry: Duration::from_secs(5),
            passive: false,
            graceful_restart: Some(120),
            next_hop_v4: None,
            next_hop_v6: None,
            bfd: false,
            max_received: 1_000_000,
        }
    }

    /// Peer AS equals ours.
    pub fn ibgp(&self) -> bool {
        self.local_asn == self.peer_asn
    }
}

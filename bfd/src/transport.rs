//! UDP encapsulation rules for BFD: ports and TTL (RFC 5881 single-hop, RFC 5883 multihop).
//!
//! Pure constants and predicates for the UDP driver; no sockets here. The driver sets the
//! outgoing TTL / hop limit with [`Hop::send_ttl`], reads the received TTL (IP_RECVTTL /
//! IPV6_RECVHOPLIMIT) and drops packets for which [`Hop::accepts_ttl`] is false before
//! decoding them.

use std::ops::RangeInclusive;

/// Destination UDP port of single-hop Control packets (RFC 5881 §4).
pub const SINGLE_HOP_CONTROL_PORT: u16 = 3784;
/// Destination UDP port of multihop Control packets (RFC 5883 §5).
pub const MULTIHOP_CONTROL_PORT: u16 = 4784;
/// Source ports a sender must pick from (RFC 5881 §4, also used by RFC 5883). One port is used
/// for the whole life of a session.
pub const SOURCE_PORTS: RangeInclusive<u16> = 49152..=65535;
/// TTL / hop limit of every packet Herald sends, and the only one a single-hop session accepts
/// (RFC 5881 §5, the GTSM idea of RFC 5082).
pub const MAX_TTL: u8 = 255;

/// Which encapsulation a session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hop {
    /// Directly connected peer (RFC 5881).
    Single,
    /// Peer possibly several hops away (RFC 5883); packets with a TTL below `minimum_ttl`
    /// are dropped (the profile's `minimumTtl`).
    Multi {
        /// Lowest received TTL accepted.
        minimum_ttl: u8,
    },
}

impl Hop {
    /// Destination UDP port for Control packets.
    pub fn destination_port(self) -> u16 {
        match self {
            Hop::Single => SINGLE_HOP_CONTROL_PORT,
            Hop::Multi { .. } => MULTIHOP_CONTROL_PORT,
        }
    }

    /// TTL / hop limit to send with. RFC 5881 §5 requires 255 for single-hop; RFC 5883 leaves
    /// multihop open, and 255 lets the receiver bound the hop count with its minimum TTL.
    pub fn send_ttl(self) -> u8 {
        MAX_TTL
    }

    /// Whether a packet received with `ttl` may be processed.
    ///
    /// Single-hop: only 255 (RFC 5881 §5, unauthenticated sessions). Multihop: at least the
    /// configured minimum (RFC 5883 §5 leaves the check to configuration).
    pub fn accepts_ttl(self, ttl: u8) -> bool {
        match self {
            Hop::Single => ttl == MAX_TTL,
            Hop::Multi { minimum_ttl } => ttl >= minimum_ttl,
        }
    }
}

/// Whether `port` is a valid source port for BFD Control packets (RFC 5881 §4).
pub fn is_valid_source_port(port: u16) -> bool {
    SOURCE_PORTS.contains(&port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_hop_uses_port_3784_and_accepts_only_ttl_255() {
        assert_eq!(Hop::Single.destination_port(), 3784);
        assert_eq!(Hop::Single.send_ttl(), 255);
        assert!(Hop::Single.accepts_ttl(255));
        assert!(!Hop::Single.accepts_ttl(254));
        assert!(!Hop::Single.accepts_ttl(1));
    }

    #[test]
    fn multihop_uses_port_4784_and_accepts_ttl_at_or_above_the_minimum() {
        let hop = Hop::Multi { minimum_ttl: 254 };
        assert_eq!(hop.destination_port(), 4784);
        assert_eq!(hop.send_ttl(), 255);
        assert!(hop.accepts_ttl(255));
        assert!(hop.accepts_ttl(254));
        assert!(!hop.accepts_ttl(253));
    }

    #[test]
    fn source_ports_are_the_dynamic_range() {
        assert!(!is_valid_source_port(49151));
        assert!(is_valid_source_port(49152));
        assert!(is_valid_source_port(65535));
        assert!(!is_valid_source_port(3784));
    }
}

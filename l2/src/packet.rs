//! ARP (RFC 826) and NDP (RFC 4861) frames for the layer-2 responders: parse what a raw
//! socket receives into a [`Request`], build the answers and announcements.
//!
//! Header parsing, the ARP wire format and the ICMPv6 checksum come from `etherparse`; this
//! module adds only what it lacks: the RFC 4861 §7.1.1 validity rules, the choice of reply
//! addresses, the target link-layer address option (RFC 4861 §4.6.1) and the multicast
//! address mappings (RFC 4291 §2.7.1, RFC 2464 §7).
//!
//! Parsing never panics and returns `None` for anything that is not a well-formed ARP request
//! or neighbour solicitation (the responder ignores it). Built frames carry the 802.1Q tag of
//! the request, if any, and are padded to the 60-byte Ethernet minimum.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use etherparse::VlanId;
use etherparse::icmpv6::{Icmpv6PayloadSlice, NdpOptionSlice, NeighborAdvertisementHeader};
use etherparse::{
    ArpEthIpv4Packet, ArpOperation, EtherType, Ethernet2Header, Icmpv6Header, Icmpv6Slice,
    Icmpv6Type, IpNumber, Ipv6FlowLabel, Ipv6Header, Ipv6Slice, LinkExtSlice, LinkSlice, NetSlice,
    SingleVlanHeader, SlicedPacket, TransportSlice, VlanPcp,
};

/// An Ethernet MAC address, in wire order.
pub type MacAddr = [u8; 6];

/// The Ethernet broadcast address, where gratuitous ARP goes.
pub const BROADCAST_MAC: MacAddr = [0xff; 6];

/// The link-local all-nodes multicast group (RFC 4291 §2.7.1), where unsolicited NAs and
/// answers to duplicate address detection go.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// RFC 4861 §7.1.1: NDP messages must arrive with the hop limit they were sent with, 255, which
/// proves they were not forwarded by a router.
const NDP_HOP_LIMIT: u8 = 255;

/// Shortest Ethernet frame without FCS; shorter frames are padded with zeros.
const MIN_FRAME_LEN: usize = 60;

/// Length of a link-layer address option carrying an Ethernet address: type, length (in units
/// of 8 octets, here 1) and the 6-byte address (RFC 4861 §4.6.1).
const LL_OPTION_LEN: usize = 8;

/// Option type of the target link-layer address option (RFC 4861 §4.6.1).
const TARGET_LL_OPTION: u8 = 2;

/// A request the layer-2 responder may have to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// An ARP request (RFC 826) for `target_ip`.
    Arp(ArpRequest),
    /// A valid neighbour solicitation (RFC 4861 §4.3, §7.1.1) for `target`.
    NeighborSolicit(NeighborSolicit),
}

impl Request {
    /// The address being asked for: what the responder looks up among the addresses it owns.
    pub fn target(&self) -> IpAddr {
        match self {
            Request::Arp(r) => IpAddr::V4(r.target_ip),
            Request::NeighborSolicit(r) => IpAddr::V6(r.target),
        }
    }
}

/// An Ethernet/IPv4 ARP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpRequest {
    /// The 802.1Q tag the request carried; the reply carries it too.
    pub vlan: Option<VlanId>,
    /// Sender hardware address from the ARP payload; the reply goes there.
    pub sender_mac: MacAddr,
    /// Sender protocol address; 0.0.0.0 for an RFC 5227 probe.
    pub sender_ip: Ipv4Addr,
    /// The address asked for.
    pub target_ip: Ipv4Addr,
}

/// A neighbour solicitation that passed the RFC 4861 §7.1.1 checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborSolicit {
    /// The 802.1Q tag the solicitation carried; the advertisement carries it too.
    pub vlan: Option<VlanId>,
    /// Ethernet source address of the frame.
    pub src_mac: MacAddr,
    /// IPv6 source; unspecified (`::`) during duplicate address detection.
    pub src_ip: Ipv6Addr,
    /// The address asked for.
    pub target: Ipv6Addr,
    /// The source link-layer address option, if present (never during DAD).
    pub source_ll_option: Option<MacAddr>,
}

impl NeighborSolicit {
    /// Whether this is duplicate address detection (RFC 4862 §5.4.2): the sender has no
    /// address yet, so the answer must go to all nodes.
    pub fn is_dad(&self) -> bool {
        self.src_ip.is_unspecified()
    }
}

/// Parses an Ethernet II frame, untagged or with one 802.1Q tag, into a [`Request`].
///
/// Returns `None` for anything else, including ARP replies, non-Ethernet/IPv4 ARP, and
/// neighbour solicitations that fail RFC 4861 §7.1.1 (hop limit not 255, code not 0,
/// ICMP length below 24, bad checksum, multicast target, zero-length or truncated options,
/// DAD not sent to a solicited-node group or carrying a source link-layer address option).
pub fn parse(frame: &[u8]) -> Option<Request> {
    let packet = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(LinkSlice::Ethernet2(eth)) = &packet.link else {
        return None;
    };
    let vlan = match packet.link_exts.as_slice() {
        [] => None,
        [LinkExtSlice::Vlan(tag)] if eth.ether_type() == EtherType::VLAN_TAGGED_FRAME => {
            Some(tag.vlan_identifier())
        }
        _ => return None,
    };
    match (&packet.net, &packet.transport) {
        (Some(NetSlice::Arp(arp)), _) => parse_arp(arp.to_packet().try_eth_ipv4().ok()?, vlan),
        (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp))) => {
            parse_solicit(ip, icmp, eth.source(), vlan)
        }
        _ => None,
    }
}

fn parse_arp(arp: ArpEthIpv4Packet, vlan: Option<VlanId>) -> Option<Request> {
    if arp.operation != ArpOperation::REQUEST {
        return None;
    }
    Some(Request::Arp(ArpRequest {
        vlan,
        sender_mac: arp.sender_mac,
        sender_ip: arp.sender_ipv4_addr(),
        target_ip: arp.target_ipv4_addr(),
    }))
}

/// RFC 4861 §7.1.1 validation of a neighbour solicitation.
fn parse_solicit(
    ip: &Ipv6Slice<'_>,
    icmp: &Icmpv6Slice<'_>,
    src_mac: MacAddr,
    vlan: Option<VlanId>,
) -> Option<Request> {
    let header = ip.header();
    let (src_ip, dst_ip) = (header.source_addr(), header.destination_addr());
    if header.hop_limit() != NDP_HOP_LIMIT
        // `icmp_type` is NeighborSolicitation only with code 0.
        || icmp.icmp_type() != Icmpv6Type::NeighborSolicitation
        || !icmp.is_checksum_valid(header.source(), header.destination())
    {
        return None;
    }
    // Fails when the ICMP length is below 24 (8-byte header plus the 16-byte target).
    let Ok(Icmpv6PayloadSlice::NeighborSolicitation(payload)) = icmp.payload_slice() else {
        return None;
    };
    let target = payload.target_address();
    if target.is_multicast() {
        return None;
    }
    let mut source_ll_option = None;
    for option in payload.options_iterator() {
        // Zero-length and truncated options make the whole message invalid.
        match option.ok()? {
            NdpOptionSlice::SourceLinkLayerAddress(o) => {
                // An Ethernet address fills a one-unit option exactly (RFC 2464 §8).
                source_ll_option = Some(MacAddr::try_from(o.link_layer_address()).ok()?);
            }
            // Unknown options must be ignored (RFC 4861 §4.6).
            _ => continue,
        }
    }
    if src_ip.is_unspecified() && (dst_ip != solicited_node(target) || source_ll_option.is_some()) {
        return None;
    }
    Some(Request::NeighborSolicit(NeighborSolicit {
        vlan,
        src_mac,
        src_ip,
        target,
        source_ll_option,
    }))
}

/// Builds the ARP reply (RFC 826) saying that `request.target_ip` is at `our_mac`, unicast to
/// the requester.
pub fn arp_reply(request: &ArpRequest, our_mac: MacAddr) -> Vec<u8> {
    let arp = ArpEthIpv4Packet {
        operation: ArpOperation::REPLY,
        sender_mac: our_mac,
        sender_ipv4: request.target_ip.octets(),
        target_mac: request.sender_mac,
        target_ipv4: request.sender_ip.octets(),
    };
    frame(
        our_mac,
        request.sender_mac,
        request.vlan,
        EtherType::ARP,
        &arp.to_bytes(),
    )
}

/// Builds a gratuitous ARP for `vip`: a broadcast request with sender and target address both
/// `vip` and an all-zero target hardware address (RFC 5227 §3), so every neighbour updates its
/// cache entry to `our_mac` on takeover.
pub fn gratuitous_arp(vip: Ipv4Addr, our_mac: MacAddr, vlan: Option<VlanId>) -> Vec<u8> {
    let arp = ArpEthIpv4Packet {
        operation: ArpOperation::REQUEST,
        sender_mac: our_mac,
        sender_ipv4: vip.octets(),
        target_mac: [0; 6],
        target_ipv4: vip.octets(),
    };
    frame(
        our_mac,
        BROADCAST_MAC,
        vlan,
        EtherType::ARP,
        &arp.to_bytes(),
    )
}

/// Builds the neighbour advertisement answering `request` (RFC 4861 §7.2.4): override flag set,
/// target link-layer address option `our_mac`, source address the target itself.
///
/// Normally solicited and unicast to the solicitor (to its source link-layer address option
/// if it sent one, else to the frame's source MAC). For duplicate address detection the
/// solicitor has no address, so the advertisement is unsolicited and goes to [`ALL_NODES`].
pub fn neighbor_advert(request: &NeighborSolicit, our_mac: MacAddr) -> Vec<u8> {
    let (dst_ip, dst_mac, solicited) = if request.is_dad() {
        (ALL_NODES, multicast_mac(ALL_NODES), false)
    } else {
        let mac = request.source_ll_option.unwrap_or(request.src_mac);
        (request.src_ip, mac, true)
    };
    advert(
        request.target,
        our_mac,
        dst_ip,
        dst_mac,
        solicited,
        request.vlan,
    )
}

/// Builds an unsolicited neighbour advertisement for `vip` to [`ALL_NODES`] (RFC 4861 §7.2.6):
/// override set, solicited clear, so neighbours replace their cache entry on takeover.
pub fn unsolicited_neighbor_advert(
    vip: Ipv6Addr,
    our_mac: MacAddr,
    vlan: Option<VlanId>,
) -> Vec<u8> {
    advert(
        vip,
        our_mac,
        ALL_NODES,
        multicast_mac(ALL_NODES),
        false,
        vlan,
    )
}

/// The solicited-node multicast address of `addr` (RFC 4291 §2.7.1): `ff02::1:ff00:0/104`
/// followed by the low 24 bits of `addr`. Solicitations for `addr` are sent there.
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let low24 = addr.to_bits() & 0x00ff_ffff;
    Ipv6Addr::from_bits(0xff02_0000_0000_0000_0000_0001_ff00_0000 | low24)
}

/// The Ethernet address an IPv6 multicast `group` maps to (RFC 2464 §7): `33:33` followed by
/// the group's low 32 bits.
pub fn multicast_mac(group: Ipv6Addr) -> MacAddr {
    let [.., a, b, c, d] = group.octets();
    [0x33, 0x33, a, b, c, d]
}

/// The Ethernet address (`33:33:ff:xx:xx:xx`) of the solicited-node group of `addr`: the group
/// the responder must receive to hear solicitations for `addr`.
pub fn solicited_node_mac(addr: Ipv6Addr) -> MacAddr {
    multicast_mac(solicited_node(addr))
}

fn advert(
    target: Ipv6Addr,
    our_mac: MacAddr,
    dst_ip: Ipv6Addr,
    dst_mac: MacAddr,
    solicited: bool,
    vlan: Option<VlanId>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + LL_OPTION_LEN);
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&[TARGET_LL_OPTION, 1]);
    body.extend_from_slice(&our_mac);

    let icmp_type = Icmpv6Type::NeighborAdvertisement(NeighborAdvertisementHeader {
        router: false,
        solicited,
        r#override: true,
    });
    let (src, dst) = (target.octets(), dst_ip.octets());
    let icmp = Icmpv6Header::with_checksum(icmp_type, src, dst, &body)
        .expect("a 24-byte body is within the ICMPv6 length limit");
    let icmp_bytes = icmp.to_bytes();
    let ip = Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        // 8 + 24 bytes: cannot truncate.
        payload_length: (icmp_bytes.len() + body.len()) as u16,
        next_header: IpNumber::IPV6_ICMP,
        hop_limit: NDP_HOP_LIMIT,
        source: src,
        destination: dst,
    };
    let mut payload = Vec::with_capacity(Ipv6Header::LEN + icmp_bytes.len() + body.len());
    payload.extend_from_slice(&ip.to_bytes());
    payload.extend_from_slice(&icmp_bytes);
    payload.extend_from_slice(&body);
    frame(our_mac, dst_mac, vlan, EtherType::IPV6, &payload)
}

/// Prepends the Ethernet header (and 802.1Q tag) to `payload` and pads to the minimum size.
fn frame(
    src: MacAddr,
    dst: MacAddr,
    vlan: Option<VlanId>,
    ether_type: EtherType,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(MIN_FRAME_LEN.max(18 + payload.len()));
    let outer_type = if vlan.is_some() {
        EtherType::VLAN_TAGGED_FRAME
    } else {
        ether_type
    };
    let eth = Ethernet2Header {
        source: src,
        destination: dst,
        ether_type: outer_type,
    };
    out.extend_from_slice(&eth.to_bytes());
    if let Some(vlan_id) = vlan {
        let tag = SingleVlanHeader {
            pcp: VlanPcp::ZERO,
            drop_eligible_indicator: false,
            vlan_id,
            ether_type,
        };
        out.extend_from_slice(&tag.to_bytes());
    }
    out.extend_from_slice(payload);
    if out.len() < MIN_FRAME_LEN {
        out.resize(MIN_FRAME_LEN, 0);
    }
    out
}

#[cfg(test)]
mod tests;

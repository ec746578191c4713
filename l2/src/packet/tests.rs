//! Table tests for parsing, round trips through the builders, and never panicking.

use etherparse::{
    ArpHardwareId, ArpPacket, Icmpv6Slice, Ipv6HeaderSlice, LaxSlicedPacket, PacketBuilder,
};
use proptest::prelude::*;

use super::*;

const PEER_MAC: MacAddr = [0x02, 0, 0, 0, 0, 0x01];
const OUR_MAC: MacAddr = [0x02, 0, 0, 0, 0, 0x02];
const PEER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const VIP_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const PEER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const VIP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0xab, 0xcdef);

fn vlan(id: u16) -> VlanId {
    VlanId::try_new(id).unwrap()
}

/// An Ethernet/IPv4 ARP frame with the given fields, untagged, unpadded.
fn arp_frame(op: ArpOperation, hw: ArpHardwareId, proto: EtherType) -> Vec<u8> {
    let arp = ArpPacket::new(
        hw,
        proto,
        op,
        &PEER_MAC,
        &PEER_V4.octets(),
        &[0; 6],
        &VIP_V4.octets(),
    )
    .unwrap();
    let mut out = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC, BROADCAST_MAC)
        .arp(arp)
        .write(&mut out)
        .unwrap();
    out
}

fn arp_request_frame() -> Vec<u8> {
    arp_frame(
        ArpOperation::REQUEST,
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
    )
}

/// What a neighbour solicitation is made of; tests break one field at a time.
#[derive(Clone)]
struct Ns {
    vlan: Option<u16>,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    code: u8,
    target: Vec<u8>,
    options: Vec<u8>,
    corrupt_checksum: bool,
}

impl Ns {
    fn valid() -> Self {
        let mut options = vec![1, 1];
        options.extend_from_slice(&PEER_MAC);
        Self {
            vlan: None,
            src: PEER_V6,
            dst: solicited_node(VIP_V6),
            hop_limit: 255,
            code: 0,
            target: VIP_V6.octets().to_vec(),
            options,
            corrupt_checksum: false,
        }
    }

    fn dad() -> Self {
        Self {
            src: Ipv6Addr::UNSPECIFIED,
            options: vec![],
            ..Self::valid()
        }
    }

    fn build(&self) -> Vec<u8> {
        let mut body = self.target.clone();
        body.extend_from_slice(&self.options);
        let eth = PacketBuilder::ethernet2(PEER_MAC, solicited_node_mac(VIP_V6));
        let icmp_type = Icmpv6Type::Unknown {
            type_u8: 135,
            code_u8: self.code,
            bytes5to8: [0; 4],
        };
        let mut out = Vec::new();
        match self.vlan {
            None => eth
                .ipv6(self.src.octets(), self.dst.octets(), self.hop_limit)
                .icmpv6(icmp_type)
                .write(&mut out, &body),
            Some(id) => eth
                .single_vlan(vlan(id))
                .ipv6(self.src.octets(), self.dst.octets(), self.hop_limit)
                .icmpv6(icmp_type)
                .write(&mut out, &body),
        }
        .unwrap();
        if self.corrupt_checksum {
            let at = out.len() - body.len() - 6; // checksum is bytes 2..4 of the ICMPv6 header
            out[at] ^= 0x01;
        }
        out
    }
}

#[test]
fn parses_an_untagged_arp_request() {
    assert_eq!(
        parse(&arp_request_frame()),
        Some(Request::Arp(ArpRequest {
            vlan: None,
            sender_mac: PEER_MAC,
            sender_ip: PEER_V4,
            target_ip: VIP_V4,
        }))
    );
}

#[test]
fn parses_an_arp_request_with_one_vlan_tag() {
    let arp = ArpPacket::from(ArpEthIpv4Packet {
        operation: ArpOperation::REQUEST,
        sender_mac: PEER_MAC,
        sender_ipv4: PEER_V4.octets(),
        target_mac: [0; 6],
        target_ipv4: VIP_V4.octets(),
    });
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC, BROADCAST_MAC)
        .single_vlan(vlan(42))
        .arp(arp)
        .write(&mut frame)
        .unwrap();
    let Some(Request::Arp(r)) = parse(&frame) else {
        panic!("not an ARP request");
    };
    assert_eq!(r.vlan, Some(vlan(42)));
    assert_eq!(r.target_ip, VIP_V4);
}

#[test]
fn ignores_arp_replies_and_unknown_opcodes() {
    for op in [ArpOperation::REPLY, ArpOperation(3), ArpOperation(0)] {
        let frame = arp_frame(op, ArpHardwareId::ETHERNET, EtherType::IPV4);
        assert_eq!(parse(&frame), None, "{op:?}");
    }
}

#[test]
fn ignores_arp_for_other_hardware_or_protocol_types() {
    for (hw, proto) in [
        (ArpHardwareId::IEEE802, EtherType::IPV4),
        (ArpHardwareId(0), EtherType::IPV4),
        (ArpHardwareId::ETHERNET, EtherType::IPV6),
    ] {
        let frame = arp_frame(ArpOperation::REQUEST, hw, proto);
        assert_eq!(parse(&frame), None, "{hw:?} {proto:?}");
    }
}

#[test]
fn ignores_arp_with_other_address_sizes() {
    let mut frame = arp_request_frame();
    frame[14 + 4] = 8; // hardware address length
    assert_eq!(parse(&frame), None);
}

#[test]
fn ignores_truncated_frames() {
    for full in [arp_request_frame(), Ns::valid().build(), Ns::dad().build()] {
        for len in 0..full.len() {
            assert_eq!(parse(&full[..len]), None, "len {len}");
        }
    }
}

#[test]
fn accepts_ethernet_padding_after_an_arp_request() {
    let mut frame = arp_request_frame();
    frame.resize(60, 0);
    assert!(matches!(parse(&frame), Some(Request::Arp(_))));
}

#[test]
fn ignores_double_tagged_and_provider_tagged_frames() {
    let mut double = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC, BROADCAST_MAC)
        .double_vlan(vlan(1), vlan(2))
        .arp(ArpPacket::from(ArpEthIpv4Packet {
            operation: ArpOperation::REQUEST,
            sender_mac: PEER_MAC,
            sender_ipv4: PEER_V4.octets(),
            target_mac: [0; 6],
            target_ipv4: VIP_V4.octets(),
        }))
        .write(&mut double)
        .unwrap();
    assert_eq!(parse(&double), None);

    let mut provider = gratuitous_arp(VIP_V4, OUR_MAC, Some(vlan(7)));
    provider[12..14].copy_from_slice(&EtherType::PROVIDER_BRIDGING.0.to_be_bytes());
    assert_eq!(parse(&provider), None);
}

#[test]
fn ignores_ipv4_and_other_icmpv6_traffic() {
    let mut udp = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC, OUR_MAC)
        .ipv4(PEER_V4.octets(), VIP_V4.octets(), 64)
        .udp(1, 2)
        .write(&mut udp, &[0; 8])
        .unwrap();
    assert_eq!(parse(&udp), None);

    let mut echo = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC, OUR_MAC)
        .ipv6(PEER_V6.octets(), VIP_V6.octets(), 255)
        .icmpv6_echo_request(1, 1)
        .write(&mut echo, &[0; 24])
        .unwrap();
    assert_eq!(parse(&echo), None);

    // An NA is not a request, even though it is valid NDP.
    assert_eq!(
        parse(&unsolicited_neighbor_advert(VIP_V6, OUR_MAC, None)),
        None
    );
}

#[test]
fn parses_a_neighbor_solicitation_with_source_link_layer_option() {
    assert_eq!(
        parse(&Ns::valid().build()),
        Some(Request::NeighborSolicit(NeighborSolicit {
            vlan: None,
            src_mac: PEER_MAC,
            src_ip: PEER_V6,
            target: VIP_V6,
            source_ll_option: Some(PEER_MAC),
        }))
    );
}

#[test]
fn parses_a_tagged_solicitation_without_options_and_skips_unknown_options() {
    let plain = Ns {
        vlan: Some(100),
        options: vec![],
        ..Ns::valid()
    };
    let Some(Request::NeighborSolicit(r)) = parse(&plain.build()) else {
        panic!("rejected");
    };
    assert_eq!((r.vlan, r.source_ll_option), (Some(vlan(100)), None));

    let unknown = Ns {
        options: vec![200, 1, 0, 0, 0, 0, 0, 0],
        ..Ns::valid()
    };
    assert!(parse(&unknown.build()).is_some());
}

#[test]
fn parses_duplicate_address_detection() {
    let Some(Request::NeighborSolicit(r)) = parse(&Ns::dad().build()) else {
        panic!("rejected");
    };
    assert!(r.is_dad());
    assert_eq!(Request::NeighborSolicit(r).target(), IpAddr::V6(VIP_V6));
}

#[test]
fn ignores_solicitations_that_fail_rfc4861_validation() {
    let mut truncated_target = Ns::valid();
    truncated_target.target.truncate(8);
    truncated_target.options.clear();
    let cases = [
        (
            "hop limit 254",
            Ns {
                hop_limit: 254,
                ..Ns::valid()
            },
        ),
        (
            "hop limit 1",
            Ns {
                hop_limit: 1,
                ..Ns::valid()
            },
        ),
        (
            "code 1",
            Ns {
                code: 1,
                ..Ns::valid()
            },
        ),
        (
            "bad checksum",
            Ns {
                corrupt_checksum: true,
                ..Ns::valid()
            },
        ),
        ("icmp length 16", truncated_target),
        (
            "multicast target",
            Ns {
                target: ALL_NODES.octets().to_vec(),
                ..Ns::valid()
            },
        ),
        (
            "zero-length option",
            Ns {
                options: vec![1, 0, 0, 0, 0, 0, 0, 0],
                ..Ns::valid()
            },
        ),
        (
            "option longer than the packet",
            Ns {
                options: vec![1, 2, 0, 0, 0, 0, 0, 0],
                ..Ns::valid()
            },
        ),
        (
            "source link-layer option not 6 bytes",
            Ns {
                options: [vec![1, 2], vec![0; 14]].concat(),
                ..Ns::valid()
            },
        ),
        (
            "DAD with source link-layer option",
            Ns {
                options: Ns::valid().options,
                ..Ns::dad()
            },
        ),
        (
            "DAD to all nodes",
            Ns {
                dst: ALL_NODES,
                ..Ns::dad()
            },
        ),
        (
            "DAD to another solicited-node group",
            Ns {
                dst: solicited_node(PEER_V6),
                ..Ns::dad()
            },
        ),
    ];
    for (name, ns) in cases {
        assert_eq!(parse(&ns.build()), None, "{name}");
    }
}

#[test]
fn arp_reply_answers_the_requester_with_our_mac() {
    let request = ArpRequest {
        vlan: Some(vlan(5)),
        sender_mac: PEER_MAC,
        sender_ip: PEER_V4,
        target_ip: VIP_V4,
    };
    let frame = arp_reply(&request, OUR_MAC);
    assert_eq!(frame.len(), 60);
    let packet = SlicedPacket::from_ethernet(&frame).unwrap();
    let Some(LinkSlice::Ethernet2(eth)) = &packet.link else {
        panic!("no ethernet");
    };
    assert_eq!((eth.source(), eth.destination()), (OUR_MAC, PEER_MAC));
    assert_eq!(packet.vlan_ids().as_slice(), &[vlan(5)]);
    let Some(NetSlice::Arp(arp)) = &packet.net else {
        panic!("no arp");
    };
    assert_eq!(
        arp.to_packet().try_eth_ipv4().unwrap(),
        ArpEthIpv4Packet {
            operation: ArpOperation::REPLY,
            sender_mac: OUR_MAC,
            sender_ipv4: VIP_V4.octets(),
            target_mac: PEER_MAC,
            target_ipv4: PEER_V4.octets(),
        }
    );
    // A reply is not a request: the responder never answers its own replies.
    assert_eq!(parse(&frame), None);
}

#[test]
fn gratuitous_arp_is_a_broadcast_request_for_the_vip_from_the_vip() {
    let frame = gratuitous_arp(VIP_V4, OUR_MAC, None);
    assert_eq!(frame.len(), 60);
    assert_eq!(&frame[..6], &BROADCAST_MAC);
    assert_eq!(
        parse(&frame),
        Some(Request::Arp(ArpRequest {
            vlan: None,
            sender_mac: OUR_MAC,
            sender_ip: VIP_V4,
            target_ip: VIP_V4,
        }))
    );
}

/// The fields of a built NA, decoded with etherparse rather than with `parse`.
struct Na {
    eth_src: MacAddr,
    eth_dst: MacAddr,
    vlan: Option<VlanId>,
    ip_src: Ipv6Addr,
    ip_dst: Ipv6Addr,
    hop_limit: u8,
    flags: NeighborAdvertisementHeader,
    target: Ipv6Addr,
    target_ll: Option<MacAddr>,
}

fn decode_na(frame: &[u8]) -> Na {
    let packet = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(LinkSlice::Ethernet2(eth)) = &packet.link else {
        panic!("no ethernet");
    };
    let Some(NetSlice::Ipv6(ip)) = &packet.net else {
        panic!("no ipv6");
    };
    let Some(TransportSlice::Icmpv6(icmp)) = &packet.transport else {
        panic!("no icmpv6");
    };
    let header: Ipv6HeaderSlice<'_> = ip.header();
    assert!(icmp.is_checksum_valid(header.source(), header.destination()));
    assert_eq!(icmp.code_u8(), 0);
    let Icmpv6Type::NeighborAdvertisement(flags) = icmp.icmp_type() else {
        panic!("not an NA");
    };
    let Ok(Icmpv6PayloadSlice::NeighborAdvertisement(payload)) = icmp.payload_slice() else {
        panic!("bad payload");
    };
    let mut target_ll = None;
    for option in payload.options_iterator() {
        if let NdpOptionSlice::TargetLinkLayerAddress(o) = option.unwrap() {
            target_ll = Some(MacAddr::try_from(o.link_layer_address()).unwrap());
        }
    }
    Na {
        eth_src: eth.source(),
        eth_dst: eth.destination(),
        vlan: packet.vlan_ids().first().copied(),
        ip_src: header.source_addr(),
        ip_dst: header.destination_addr(),
        hop_limit: header.hop_limit(),
        flags,
        target: payload.target_address(),
        target_ll,
    }
}

#[test]
fn neighbor_advert_is_solicited_unicast_with_override_and_target_option() {
    let Some(Request::NeighborSolicit(request)) = parse(
        &Ns {
            vlan: Some(9),
            ..Ns::valid()
        }
        .build(),
    ) else {
        panic!("rejected");
    };
    let na = decode_na(&neighbor_advert(&request, OUR_MAC));
    assert_eq!((na.eth_src, na.eth_dst), (OUR_MAC, PEER_MAC));
    assert_eq!(na.vlan, Some(vlan(9)));
    assert_eq!((na.ip_src, na.ip_dst), (VIP_V6, PEER_V6));
    assert_eq!(na.hop_limit, 255);
    assert_eq!(
        na.flags,
        NeighborAdvertisementHeader {
            router: false,
            solicited: true,
            r#override: true
        }
    );
    assert_eq!(na.target, VIP_V6);
    assert_eq!(na.target_ll, Some(OUR_MAC));
}

#[test]
fn neighbor_advert_prefers_the_source_link_layer_option_over_the_frame_source() {
    let other: MacAddr = [0x02, 0, 0, 0, 0, 0x77];
    let request = NeighborSolicit {
        vlan: None,
        src_mac: PEER_MAC,
        src_ip: PEER_V6,
        target: VIP_V6,
        source_ll_option: Some(other),
    };
    assert_eq!(
        decode_na(&neighbor_advert(&request, OUR_MAC)).eth_dst,
        other
    );
}

#[test]
fn neighbor_advert_to_duplicate_address_detection_goes_to_all_nodes_unsolicited() {
    let Some(Request::NeighborSolicit(request)) = parse(&Ns::dad().build()) else {
        panic!("rejected");
    };
    let na = decode_na(&neighbor_advert(&request, OUR_MAC));
    assert_eq!(na.ip_dst, ALL_NODES);
    assert_eq!(na.eth_dst, [0x33, 0x33, 0, 0, 0, 1]);
    assert!(!na.flags.solicited && na.flags.r#override);
}

#[test]
fn unsolicited_neighbor_advert_goes_to_all_nodes_with_override() {
    let na = decode_na(&unsolicited_neighbor_advert(VIP_V6, OUR_MAC, Some(vlan(3))));
    assert_eq!(
        (na.eth_src, na.eth_dst),
        (OUR_MAC, [0x33, 0x33, 0, 0, 0, 1])
    );
    assert_eq!(na.vlan, Some(vlan(3)));
    assert_eq!(
        (na.ip_src, na.ip_dst, na.hop_limit),
        (VIP_V6, ALL_NODES, 255)
    );
    assert_eq!(
        na.flags,
        NeighborAdvertisementHeader {
            router: false,
            solicited: false,
            r#override: true
        }
    );
    assert_eq!((na.target, na.target_ll), (VIP_V6, Some(OUR_MAC)));
}

#[test]
fn solicited_node_group_keeps_the_low_24_bits() {
    let addr: Ipv6Addr = "2001:db8::1234:5678".parse().unwrap();
    assert_eq!(
        solicited_node(addr),
        "ff02::1:ff34:5678".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(
        solicited_node_mac(addr),
        [0x33, 0x33, 0xff, 0x34, 0x56, 0x78]
    );
    assert_eq!(multicast_mac(ALL_NODES), [0x33, 0x33, 0, 0, 0, 1]);
}

fn valid_frames() -> Vec<Vec<u8>> {
    vec![
        arp_request_frame(),
        gratuitous_arp(VIP_V4, OUR_MAC, Some(vlan(12))),
        Ns::valid().build(),
        Ns {
            vlan: Some(4094),
            ..Ns::dad()
        }
        .build(),
        unsolicited_neighbor_advert(VIP_V6, OUR_MAC, None),
    ]
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn never_panics_on_mutated_valid_frames(
        which in 0usize..5,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut frame = valid_frames().swap_remove(which);
        for (at, value) in edits {
            let i = at.index(frame.len());
            frame[i] = value;
        }
        let len = cut.index(frame.len() + 1);
        let parsed = parse(&frame[..len]);
        // Whatever survives mutation still satisfies the invariants parse promises.
        if let Some(Request::NeighborSolicit(ns)) = parsed {
            prop_assert!(!ns.target.is_multicast());
            prop_assert!(!(ns.is_dad() && ns.source_ll_option.is_some()));
        }
        let _ = LaxSlicedPacket::from_ethernet(&frame[..len]);
    }

    #[test]
    fn built_answers_round_trip(mac in any::<[u8; 6]>(), v6 in any::<u128>(), v4 in any::<u32>()) {
        let vip6 = Ipv6Addr::from_bits(v6);
        let vip4 = Ipv4Addr::from_bits(v4);
        let na = decode_na(&unsolicited_neighbor_advert(vip6, mac, None));
        prop_assert_eq!((na.target, na.target_ll, na.eth_src), (vip6, Some(mac), mac));
        let garp = parse(&gratuitous_arp(vip4, mac, None));
        prop_assert_eq!(
            garp,
            Some(Request::Arp(ArpRequest { vlan: None, sender_mac: mac, sender_ip: vip4, target_ip: vip4 }))
        );
    }
}

#[test]
fn icmpv6_slice_rejects_short_messages() {
    // Guards the assumption in `parse_solicit` that etherparse enforces the 8-byte minimum.
    assert!(Icmpv6Slice::from_slice(&[135, 0, 0, 0]).is_err());
}

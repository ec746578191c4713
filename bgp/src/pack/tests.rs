//! UPDATE packing and attribute tests: every message is decoded back with the same library.

use std::collections::BTreeSet;

use netgauze_bgp_pkt::path_attribute::{AsPath, PathAttributeValue};

use super::*;
use crate::codec::{Decoded, Decoder, encode};

fn params(ibgp: bool, asn4: bool) -> UpdateParams {
    UpdateParams {
        local_asn: 64512,
        ibgp,
        asn4,
        next_hop_v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
        next_hop_v6: Some("2001:db8::1".parse().unwrap()),
    }
}

fn host_routes_v4(n: u32) -> Vec<IpNet> {
    (0..n)
        .map(|i| IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0xc612_0000 + i), 32).unwrap()))
        .collect()
}

fn host_routes_v6(n: u32) -> Vec<IpNet> {
    (0..n)
        .map(|i| {
            IpNet::V6(
                ipnet::Ipv6Net::new(
                    Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + u128::from(i)),
                    128,
                )
                .unwrap(),
            )
        })
        .collect()
}

/// Encodes and decodes each message; returns the decoded UPDATEs.
fn roundtrip(msgs: &[BgpMessage], asn4: bool) -> Vec<BgpUpdateMessage> {
    let mut dec = Decoder::new();
    dec.set_asn4(asn4);
    msgs.iter()
        .map(|m| {
            let mut buf = Vec::new();
            encode(m, &mut buf).unwrap();
            assert!(
                buf.len() <= MAX_MESSAGE_LEN,
                "message of {} bytes",
                buf.len()
            );
            match dec.decode(&buf) {
                Decoded::Message(BgpMessage::Update(u)) => u,
                other => panic!("decoded {other:?}"),
            }
        })
        .collect()
}

fn announced(updates: &[BgpUpdateMessage]) -> BTreeSet<IpNet> {
    let mut out = BTreeSet::new();
    for u in updates {
        out.extend(u.nlri().iter().map(|a| IpNet::V4(a.network().address())));
        for a in u.path_attributes() {
            if let PathAttributeValue::MpReach(MpReach::Ipv6Unicast { nlri, .. }) = a.value() {
                out.extend(nlri.iter().map(|a| IpNet::V6(a.network().address())));
            }
        }
    }
    out
}

fn withdrawn(updates: &[BgpUpdateMessage]) -> BTreeSet<IpNet> {
    let mut out = BTreeSet::new();
    for u in updates {
        out.extend(
            u.withdraw_routes()
                .iter()
                .map(|a| IpNet::V4(a.network().address())),
        );
        for a in u.path_attributes() {
            if let PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri }) = a.value() {
                out.extend(nlri.iter().map(|a| IpNet::V6(a.network().address())));
            }
        }
    }
    out
}

#[test]
fn twenty_thousand_ipv4_host_routes_pack_into_few_full_updates() {
    let prefixes = host_routes_v4(20_000);
    let changes = Changes {
        withdraw: vec![],
        announce: [(RouteAttrs::default(), prefixes.clone())].into(),
    };
    let msgs = params(false, true).build(&changes).unwrap();
    // 5 bytes per /32 and ~4050 bytes of NLRI per message: 25 messages.
    assert!(msgs.len() <= 26, "{} updates", msgs.len());
    let updates = roundtrip(&msgs, true);
    assert_eq!(announced(&updates), prefixes.into_iter().collect());
}

#[test]
fn twenty_thousand_ipv6_host_routes_pack_into_mp_reach_updates() {
    let prefixes = host_routes_v6(20_000);
    let changes = Changes {
        withdraw: vec![],
        announce: [(RouteAttrs::default(), prefixes.clone())].into(),
    };
    let msgs = params(false, true).build(&changes).unwrap();
    // 17 bytes per /128: about 235 per message.
    assert!(msgs.len() <= 90, "{} updates", msgs.len());
    let updates = roundtrip(&msgs, true);
    assert_eq!(announced(&updates), prefixes.into_iter().collect());
}

#[test]
fn withdrawals_of_both_families_pack_and_decode() {
    let mut prefixes = host_routes_v4(3000);
    prefixes.extend(host_routes_v6(3000));
    let changes = Changes {
        withdraw: prefixes.clone(),
        announce: Default::default(),
    };
    let msgs = params(false, true).build(&changes).unwrap();
    assert!(msgs.len() <= 4 + 14, "{} updates", msgs.len());
    let updates = roundtrip(&msgs, true);
    assert_eq!(withdrawn(&updates), prefixes.into_iter().collect());
    assert!(announced(&updates).is_empty());
}

fn single(params: &UpdateParams, attrs: RouteAttrs, prefix: &str) -> BgpUpdateMessage {
    let changes = Changes {
        withdraw: vec![],
        announce: [(attrs, vec![prefix.parse().unwrap()])].into(),
    };
    let msgs = params.build(&changes).unwrap();
    assert_eq!(msgs.len(), 1);
    roundtrip(&msgs, params.asn4).remove(0)
}

#[test]
fn ebgp_route_carries_origin_igp_own_as_next_hop_and_communities() {
    let attrs = RouteAttrs::new(vec![(64512 << 16) | 100], vec![(64512, 1, 2)], Some(300));
    let u = single(&params(false, true), attrs, "198.51.100.7/32");
    let values: Vec<&PathAttributeValue> = u.path_attributes().iter().map(|a| a.value()).collect();
    assert!(
        values
            .iter()
            .any(|v| matches!(v, PathAttributeValue::Origin(Origin::IGP)))
    );
    assert!(values.iter().any(|v| matches!(v, PathAttributeValue::AsPath(AsPath::As4PathSegments(s)) if s.len() == 1 && s[0].as_numbers() == [64512])));
    assert!(values.iter().any(|v| matches!(v, PathAttributeValue::NextHop(n) if n.next_hop() == Ipv4Addr::new(10, 0, 0, 1))));
    assert!(values.iter().any(|v| matches!(v, PathAttributeValue::Communities(c) if c.communities()[0].value() == (64512 << 16) | 100)));
    assert!(values.iter().any(|v| matches!(v, PathAttributeValue::LargeCommunities(c) if c.communities()[0] == LargeCommunity::new(64512, 1, 2))));
    assert!(
        !values
            .iter()
            .any(|v| matches!(v, PathAttributeValue::LocalPreference(_))),
        "no LOCAL_PREF to eBGP"
    );
}

#[test]
fn ibgp_route_has_empty_as_path_and_local_pref() {
    let u = single(
        &params(true, true),
        RouteAttrs::new(vec![], vec![], Some(300)),
        "198.51.100.7/32",
    );
    let values: Vec<&PathAttributeValue> = u.path_attributes().iter().map(|a| a.value()).collect();
    assert!(values.iter().any(
        |v| matches!(v, PathAttributeValue::AsPath(AsPath::As4PathSegments(s)) if s.is_empty())
    ));
    assert!(
        values
            .iter()
            .any(|v| matches!(v, PathAttributeValue::LocalPreference(l) if l.metric() == 300))
    );
    let u = single(
        &params(true, true),
        RouteAttrs::default(),
        "198.51.100.7/32",
    );
    assert!(u.path_attributes().iter().any(|a| matches!(a.value(), PathAttributeValue::LocalPreference(l) if l.metric() == DEFAULT_LOCAL_PREF)));
}

#[test]
fn four_octet_as_towards_two_octet_peer_uses_as_trans_and_as4_path() {
    let p = UpdateParams {
        local_asn: 4_200_000_000,
        ..params(false, false)
    };
    let u = single(&p, RouteAttrs::default(), "198.51.100.7/32");
    let values: Vec<&PathAttributeValue> = u.path_attributes().iter().map(|a| a.value()).collect();
    assert!(values.iter().any(|v| matches!(v, PathAttributeValue::AsPath(AsPath::As2PathSegments(s)) if s[0].as_numbers() == [AS_TRANS])));
    assert!(values.iter().any(|v| matches!(v, PathAttributeValue::As4Path(p) if p.segments()[0].as_numbers() == [4_200_000_000])));
}

#[test]
fn ipv6_route_uses_mp_reach_with_the_ipv6_next_hop() {
    let u = single(
        &params(false, true),
        RouteAttrs::default(),
        "2001:db8:1::7/128",
    );
    assert!(u.nlri().is_empty());
    assert!(u.path_attributes().iter().any(|a| matches!(a.value(), PathAttributeValue::MpReach(MpReach::Ipv6Unicast { next_hop_global, nlri, .. }) if *next_hop_global == "2001:db8::1".parse::<Ipv6Addr>().unwrap() && nlri.len() == 1)));
    assert!(
        !u.path_attributes()
            .iter()
            .any(|a| matches!(a.value(), PathAttributeValue::NextHop(_)))
    );
}

#[test]
fn end_of_rib_markers_decode_as_end_of_rib() {
    let msgs = end_of_rib(Families {
        ipv4: true,
        ipv6: true,
    })
    .unwrap();
    let updates = roundtrip(&msgs, true);
    let fams: Vec<_> = updates.iter().map(|u| u.end_of_rib()).collect();
    assert_eq!(
        fams,
        vec![
            Some(netgauze_iana::address_family::AddressType::Ipv4Unicast),
            Some(netgauze_iana::address_family::AddressType::Ipv6Unicast)
        ]
    );
}

//! RFC 7606 on the decoder, rule by rule: each row is an UPDATE built byte by byte and the
//! verdict RFC 7606 §3, §4 and §7 give it (accept, treat-as-withdraw, attribute discard,
//! session reset).

use herald_bgp::codec::{Decoded, Decoder, notification_code};
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::path_attribute::PathAttributeValue;

const WELL_KNOWN: u8 = 0x40;
const OPTIONAL: u8 = 0x80;
const OPTIONAL_TRANSITIVE: u8 = 0xc0;

type Attr = (u8, u8, Vec<u8>);

fn origin() -> Attr {
    (WELL_KNOWN, 1, vec![0])
}

fn as_path() -> Attr {
    // One AS_SEQUENCE of one 4-octet AS, 64513.
    (WELL_KNOWN, 2, vec![2, 1, 0, 0, 0xfc, 0x01])
}

fn next_hop() -> Attr {
    (WELL_KNOWN, 3, vec![10, 0, 0, 2])
}

fn mp_reach_v6() -> Attr {
    let mut v = vec![0, 2, 1, 16];
    v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    v.push(0);
    v.push(128);
    v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    (OPTIONAL, 14, v)
}

fn mp_unreach_v6() -> Attr {
    let mut v = vec![0, 2, 1, 128];
    v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
    (OPTIONAL, 15, v)
}

/// 198.51.100.1/32.
const NLRI: [u8; 5] = [32, 198, 51, 100, 1];

fn encode_attrs(attrs: &[Attr]) -> Vec<u8> {
    let mut out = Vec::new();
    for (flags, code, value) in attrs {
        out.push(*flags);
        out.push(*code);
        if flags & 0x10 != 0 {
            out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        } else {
            out.push(value.len() as u8);
        }
        out.extend_from_slice(value);
    }
    out
}

/// An UPDATE frame with no withdrawn routes, the raw attribute field `attrs` and `nlri`.
fn frame(attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 16];
    let len = 19 + 2 + 2 + attrs.len() + nlri.len();
    f.extend_from_slice(&(len as u16).to_be_bytes());
    f.push(2);
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    f.extend_from_slice(attrs);
    f.extend_from_slice(nlri);
    f
}

fn update(attrs: &[Attr], nlri: &[u8]) -> Vec<u8> {
    frame(&encode_attrs(attrs), nlri)
}

#[derive(Debug, PartialEq)]
enum Verdict {
    /// Accepted, with this many NLRI (both fields).
    Accept(usize),
    /// Treat-as-withdraw, with this many NLRI counted as withdrawn.
    Withdraw(usize),
    /// Session reset with this NOTIFICATION code and subcode.
    Reset(u8, u8),
}

/// NLRI in the NLRI field, plus one for an MP_REACH_NLRI (the table's carry one prefix).
fn reach(u: &netgauze_bgp_pkt::update::BgpUpdateMessage) -> usize {
    let mp = u
        .path_attributes()
        .iter()
        .any(|a| matches!(a.value(), PathAttributeValue::MpReach(_)));
    u.nlri().len() + usize::from(mp)
}

fn verdict(frame: &[u8]) -> Verdict {
    let mut d = Decoder::new();
    d.set_asn4(true);
    match d.decode(frame) {
        Decoded::Message(BgpMessage::Update(u)) => Verdict::Accept(reach(&u)),
        Decoded::Message(other) => panic!("not an update: {other:?}"),
        Decoded::TreatAsWithdraw(u) => Verdict::Withdraw(reach(&u)),
        Decoded::Error(n) => {
            let (c, s) = notification_code(&n);
            Verdict::Reset(c, s)
        }
    }
}

fn with(replace: u8, attr: Attr) -> Vec<Attr> {
    let mut attrs = vec![origin(), as_path(), next_hop()];
    match attrs.iter().position(|a| a.1 == replace) {
        Some(i) => attrs[i] = attr,
        None => attrs.push(attr),
    }
    attrs
}

#[test]
fn every_rfc_7606_rule_for_the_attributes_herald_knows() {
    use Verdict::*;
    let base = || vec![origin(), as_path(), next_hop()];
    let without = |code: u8| -> Vec<Attr> { base().into_iter().filter(|a| a.1 != code).collect() };
    let table: Vec<(&str, Vec<u8>, Verdict)> = vec![
        ("well-formed", update(&base(), &NLRI), Accept(1)),
        // §7.1–§7.3: wrong lengths of the well-known attributes.
        (
            "ORIGIN of length 2",
            update(&with(1, (WELL_KNOWN, 1, vec![0, 0])), &NLRI),
            Withdraw(1),
        ),
        (
            "ORIGIN value 9",
            update(&with(1, (WELL_KNOWN, 1, vec![9])), &NLRI),
            Withdraw(1),
        ),
        (
            "NEXT_HOP of length 5",
            update(&with(3, (WELL_KNOWN, 3, vec![10, 0, 0, 2, 0])), &NLRI),
            Withdraw(1),
        ),
        (
            "NEXT_HOP of length 3",
            update(&with(3, (WELL_KNOWN, 3, vec![10, 0, 0])), &NLRI),
            Withdraw(1),
        ),
        // §7.4–§7.5.
        (
            "MULTI_EXIT_DISC of length 3",
            update(&with(4, (OPTIONAL, 4, vec![0, 0, 1])), &NLRI),
            Withdraw(1),
        ),
        (
            "MULTI_EXIT_DISC well-formed",
            update(&with(4, (OPTIONAL, 4, vec![0, 0, 0, 1])), &NLRI),
            Accept(1),
        ),
        (
            "LOCAL_PREF of length 2",
            update(&with(5, (WELL_KNOWN, 5, vec![0, 100])), &NLRI),
            Withdraw(1),
        ),
        // §7.6–§7.7: attribute discard, the routes stay.
        (
            "ATOMIC_AGGREGATE of length 1",
            update(&with(6, (WELL_KNOWN, 6, vec![0])), &NLRI),
            Accept(1),
        ),
        (
            "AGGREGATOR of length 7",
            update(&with(7, (OPTIONAL_TRANSITIVE, 7, vec![0; 7])), &NLRI),
            Accept(1),
        ),
        (
            "AGGREGATOR of length 8",
            update(
                &with(
                    7,
                    (OPTIONAL_TRANSITIVE, 7, vec![0, 0, 0xfc, 1, 10, 0, 0, 2]),
                ),
                &NLRI,
            ),
            Accept(1),
        ),
        // §7.8 (RFC 1997), RFC 8092 §6, §7.14 (RFC 4360).
        (
            "COMMUNITIES of length 3",
            update(&with(8, (OPTIONAL_TRANSITIVE, 8, vec![0xfc, 0, 7])), &NLRI),
            Withdraw(1),
        ),
        (
            "COMMUNITIES of length 0",
            update(&with(8, (OPTIONAL_TRANSITIVE, 8, vec![])), &NLRI),
            Withdraw(1),
        ),
        (
            "COMMUNITIES well-formed",
            update(
                &with(8, (OPTIONAL_TRANSITIVE, 8, vec![0xfc, 0, 0, 7])),
                &NLRI,
            ),
            Accept(1),
        ),
        (
            "COMMUNITIES with extended length",
            update(
                &with(8, (OPTIONAL_TRANSITIVE | 0x10, 8, vec![0xfc, 0, 0, 7])),
                &NLRI,
            ),
            Accept(1),
        ),
        (
            "LARGE_COMMUNITY of length 13",
            update(&with(32, (OPTIONAL_TRANSITIVE, 32, vec![0; 13])), &NLRI),
            Withdraw(1),
        ),
        (
            "LARGE_COMMUNITY well-formed",
            update(&with(32, (OPTIONAL_TRANSITIVE, 32, vec![0; 12])), &NLRI),
            Accept(1),
        ),
        (
            "EXTENDED_COMMUNITIES of length 7",
            update(&with(16, (OPTIONAL_TRANSITIVE, 16, vec![0; 7])), &NLRI),
            Withdraw(1),
        ),
        // §7.9–§7.10 (RFC 4456).
        (
            "ORIGINATOR_ID of length 5",
            update(&with(9, (OPTIONAL, 9, vec![0; 5])), &NLRI),
            Withdraw(1),
        ),
        (
            "CLUSTER_LIST of length 6",
            update(&with(10, (OPTIONAL, 10, vec![0; 6])), &NLRI),
            Withdraw(1),
        ),
        // RFC 6793 §6: AS4_PATH and AS4_AGGREGATOR errors are attribute discard.
        (
            "AS4_AGGREGATOR of length 6",
            update(&with(18, (OPTIONAL_TRANSITIVE, 18, vec![0; 6])), &NLRI),
            Accept(1),
        ),
        (
            "AS4_PATH overrunning its segment",
            update(
                &with(17, (OPTIONAL_TRANSITIVE, 17, vec![2, 2, 0, 0, 0xfc, 1])),
                &NLRI,
            ),
            Accept(1),
        ),
        // §3(c): flags that contradict the attribute's kind take its approach.
        (
            "ORIGIN marked optional",
            update(&with(1, (OPTIONAL_TRANSITIVE, 1, vec![0])), &NLRI),
            Withdraw(1),
        ),
        (
            "COMMUNITIES marked well-known",
            update(&with(8, (WELL_KNOWN, 8, vec![0xfc, 0, 0, 7])), &NLRI),
            Withdraw(1),
        ),
        // §3(d): missing well-known mandatory attributes.
        (
            "NLRI without NEXT_HOP",
            update(&without(3), &NLRI),
            Withdraw(1),
        ),
        (
            "NLRI without ORIGIN",
            update(&without(1), &NLRI),
            Withdraw(1),
        ),
        (
            "NLRI without AS_PATH",
            update(&without(2), &NLRI),
            Withdraw(1),
        ),
        (
            "MP_REACH_NLRI needs no NEXT_HOP",
            update(&[origin(), as_path(), mp_reach_v6()], &[]),
            Accept(1),
        ),
        (
            "MP_REACH_NLRI without ORIGIN",
            update(&[as_path(), mp_reach_v6()], &[]),
            Withdraw(1),
        ),
        (
            "withdrawals alone need no attributes",
            update(&[mp_unreach_v6()], &[]),
            Accept(0),
        ),
        // §3(g): repeated attributes.
        (
            "COMMUNITIES twice: the second is discarded",
            update(
                &with(8, (OPTIONAL_TRANSITIVE, 8, vec![0xfc, 0, 0, 7]))
                    .into_iter()
                    .chain([(OPTIONAL_TRANSITIVE, 8, vec![0xfc, 0, 0, 8])])
                    .collect::<Vec<_>>(),
                &NLRI,
            ),
            Accept(1),
        ),
        (
            "MP_REACH_NLRI twice",
            update(&[origin(), as_path(), mp_reach_v6(), mp_reach_v6()], &[]),
            Reset(3, 1),
        ),
        (
            "MP_UNREACH_NLRI twice",
            update(&[mp_unreach_v6(), mp_unreach_v6()], &[]),
            Reset(3, 1),
        ),
    ];
    let mut failures = Vec::new();
    for (case, f, want) in &table {
        let got = verdict(f);
        if &got != want {
            failures.push(format!("{case}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn attribute_framing_that_overruns_the_field_is_treat_as_withdraw_and_the_nlri_still_found() {
    // §4: the last attribute's length runs past the Total Path Attribute Length.
    let mut attrs = encode_attrs(&[origin(), as_path(), next_hop()]);
    attrs.extend_from_slice(&[OPTIONAL_TRANSITIVE, 8, 10, 0xfc, 0, 0, 7]);
    assert_eq!(verdict(&frame(&attrs, &NLRI)), Verdict::Withdraw(1));
    // §4: fewer octets left than an attribute header.
    let mut attrs = encode_attrs(&[origin(), as_path(), next_hop()]);
    attrs.extend_from_slice(&[OPTIONAL_TRANSITIVE, 8]);
    assert_eq!(verdict(&frame(&attrs, &NLRI)), Verdict::Withdraw(1));
}

#[test]
fn a_discarded_duplicate_keeps_the_first_occurrence() {
    let attrs: Vec<Attr> = with(8, (OPTIONAL_TRANSITIVE, 8, vec![0xfc, 0, 0, 7]))
        .into_iter()
        .chain([(OPTIONAL_TRANSITIVE, 8, vec![0xfc, 0, 0, 8])])
        .collect();
    let mut d = Decoder::new();
    d.set_asn4(true);
    let Decoded::Message(BgpMessage::Update(u)) = d.decode(&update(&attrs, &NLRI)) else {
        panic!("not accepted")
    };
    let communities: Vec<String> = u
        .path_attributes()
        .iter()
        .filter_map(|a| match a.value() {
            PathAttributeValue::Communities(c) => Some(format!("{c:?}")),
            _ => None,
        })
        .collect();
    assert_eq!(communities.len(), 1, "{communities:?}");
    assert!(
        communities[0].contains("7") && !communities[0].contains("value: 8"),
        "{communities:?}"
    );
}

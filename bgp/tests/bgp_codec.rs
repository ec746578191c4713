//! The BGP decode path against valid, crafted and mutated input.
//!
//! `decode_path_survives_deterministic_mutations` is the CI counterpart of the fuzz target in
//! `fuzz/`: a fixed seed, 120 000 inputs derived from valid messages, each framed, decoded and
//! fed to an Established session. It passes when nothing panics and every frame gets a verdict.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use herald_bgp::codec::{
    Decoded, Decoder, HEADER_LEN, MAX_MESSAGE_LEN, describe_notification, encode, frame_len,
    notification_code, shutdown_communication, shutdown_notification,
};
use herald_bgp::fsm::{Action, Event, Session, SessionConfig, State};
use herald_bgp::pack::{UpdateParams, end_of_rib};
use herald_bgp::rib_out::{Changes, Families};
use herald_bgp::route::RouteAttrs;
use ipnet::IpNet;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::iana::RouteRefreshSubcode;
use netgauze_bgp_pkt::route_refresh::BgpRouteRefreshMessage;
use netgauze_iana::address_family::AddressType;

fn config() -> SessionConfig {
    SessionConfig::new(64512, 64513, Ipv4Addr::new(192, 0, 2, 1))
}

fn bytes(msg: &BgpMessage) -> Vec<u8> {
    let mut out = Vec::new();
    encode(msg, &mut out).expect("encodes");
    out
}

/// Valid messages of every type Herald sends or receives.
fn corpus() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // Our OPEN, as the session builds it.
    let mut s = Session::new(config());
    s.handle(Event::ManualStart);
    for a in s.handle(Event::TcpEstablished {
        local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    }) {
        if let Action::Send(m) = a {
            out.push(bytes(&m));
        }
    }
    let prefixes = |v6: bool, n: u32| -> Vec<IpNet> {
        (0..n)
            .map(|i| {
                if v6 {
                    format!("2001:db8::{i:x}/128").parse().unwrap()
                } else {
                    format!("198.18.0.{i}/32").parse().unwrap()
                }
            })
            .collect()
    };
    let attrs = RouteAttrs::new(vec![0xfc00_0064], vec![(64512, 1, 2)], Some(200));
    for (ibgp, asn4) in [(false, true), (true, true), (false, false)] {
        let params = UpdateParams {
            local_asn: if asn4 { 4_200_000_000 } else { 64512 },
            ibgp,
            asn4,
            next_hop_v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
            next_hop_v6: Some("2001:db8::1".parse().unwrap()),
        };
        for v6 in [false, true] {
            let changes = Changes {
                withdraw: prefixes(v6, 3),
                announce: [(attrs.clone(), prefixes(v6, 5))].into(),
            };
            for m in params.build(&changes).unwrap() {
                out.push(bytes(&m));
            }
        }
    }
    for m in end_of_rib(Families {
        ipv4: true,
        ipv6: true,
    })
    .unwrap()
    {
        out.push(bytes(&m));
    }
    out.push(bytes(&BgpMessage::KeepAlive));
    out.push(bytes(&BgpMessage::Notification(shutdown_notification(
        "bye",
    ))));
    out.push(bytes(&BgpMessage::RouteRefresh(
        BgpRouteRefreshMessage::new(AddressType::Ipv6Unicast, RouteRefreshSubcode::NormalRequest),
    )));
    out
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(6) {
        let len = b.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                b[i] = rng.byte();
            }
            2 => {
                let i = rng.below(len + 1);
                let v = rng.byte();
                b.insert(i, v);
            }
            3 if len > 0 => {
                b.remove(rng.below(len));
            }
            4 => b.truncate(rng.below(len + 1)),
            5 if len > 4 => {
                // Duplicate a chunk (repeated attributes, NLRI).
                let i = rng.below(len - 2);
                let j = i + 1 + rng.below((len - i - 1).min(64));
                let chunk = b[i..j].to_vec();
                let at = rng.below(b.len() + 1);
                b.splice(at..at, chunk);
            }
            6 if len > HEADER_LEN + 1 => {
                // A length octet inside the body (attribute, prefix or field length).
                let i = HEADER_LEN + rng.below(len - HEADER_LEN);
                b[i] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)];
            }
            _ => {
                for _ in 0..rng.below(8) {
                    let v = rng.byte();
                    b.push(v);
                }
            }
        }
    }
    // Most of the time keep the header consistent so the body parsers get exercised.
    if rng.below(4) != 0 && b.len() >= HEADER_LEN {
        b[..16].fill(0xff);
        let l = u16::try_from(b.len().min(MAX_MESSAGE_LEN)).unwrap();
        b[16..18].copy_from_slice(&l.to_be_bytes());
    }
    b
}

fn established() -> Session {
    let mut s = Session::new(config());
    s.handle(Event::RoutesChanged(Arc::new(HashMap::new())));
    s.handle(Event::ManualStart);
    s.handle(Event::TcpEstablished {
        local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    });
    let mut peer = Session::new(SessionConfig::new(
        64513,
        64512,
        Ipv4Addr::new(192, 0, 2, 2),
    ));
    peer.handle(Event::ManualStart);
    let open = peer
        .handle(Event::TcpEstablished {
            local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        })
        .into_iter()
        .find_map(|a| match a {
            Action::Send(m) => Some(m),
            _ => None,
        })
        .unwrap();
    s.handle(Event::Received(Decoded::Message(open)));
    s.handle(Event::Received(Decoded::Message(BgpMessage::KeepAlive)));
    assert_eq!(s.state(), State::Established);
    s
}

#[test]
fn decode_path_survives_deterministic_mutations() {
    const INPUTS: usize = 120_000;
    let corpus = corpus();
    assert!(corpus.len() >= 15, "corpus of {}", corpus.len());
    let mut rng = Rng(0x5eed_b9b4_0000_0001);
    let mut session = established();
    let (mut messages, mut errors, mut withdraws) = (0usize, 0usize, 0usize);
    for n in 0..INPUTS {
        let seed = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, seed);
        let mut decoder = Decoder::new();
        decoder.set_asn4(n % 2 == 0);
        // Unframed, as a fuzzer would call it.
        let _ = decoder.decode(&input);
        // Framed, as the driver does, and fed to the session.
        let mut rest = &input[..];
        loop {
            match frame_len(rest) {
                Ok(Some(len)) => {
                    let decoded = decoder.decode(&rest[..len]);
                    match &decoded {
                        Decoded::Message(_) => messages += 1,
                        Decoded::TreatAsWithdraw(_) => withdraws += 1,
                        Decoded::Error(n) => {
                            errors += 1;
                            let _ = describe_notification(n);
                        }
                    }
                    session.handle(Event::Received(decoded));
                    if session.state() != State::Established {
                        session = established();
                    }
                    rest = &rest[len..];
                }
                Ok(None) => break,
                Err(_) => {
                    errors += 1;
                    break;
                }
            }
        }
    }
    // The mutations must reach all three verdicts, or the test exercises too little.
    assert!(
        messages > 1000 && errors > 1000 && withdraws > 0,
        "messages {messages}, errors {errors}, treat-as-withdraw {withdraws}"
    );
}

#[test]
fn frame_len_waits_for_the_whole_message() {
    let ka = bytes(&BgpMessage::KeepAlive);
    assert_eq!(frame_len(&ka[..10]), Ok(None));
    assert_eq!(frame_len(&ka[..18]), Ok(None));
    assert_eq!(frame_len(&ka), Ok(Some(19)));
    let mut two = ka.clone();
    two.extend_from_slice(&ka);
    assert_eq!(frame_len(&two), Ok(Some(19)));
}

#[test]
fn frame_len_rejects_broken_marker_and_bad_length_with_header_errors() {
    let mut bad = bytes(&BgpMessage::KeepAlive);
    bad[3] = 0;
    assert_eq!(notification_code(&frame_len(&bad).unwrap_err()), (1, 1));
    let mut long = bytes(&BgpMessage::KeepAlive);
    long[16..18].copy_from_slice(&5000u16.to_be_bytes());
    assert_eq!(notification_code(&frame_len(&long).unwrap_err()), (1, 2));
    let mut short = bytes(&BgpMessage::KeepAlive);
    short[16..18].copy_from_slice(&18u16.to_be_bytes());
    assert_eq!(notification_code(&frame_len(&short).unwrap_err()), (1, 2));
}

#[test]
fn every_corpus_message_decodes() {
    for (i, b) in corpus().iter().enumerate() {
        let ok = [true, false].into_iter().any(|asn4| {
            let mut d = Decoder::new();
            d.set_asn4(asn4);
            matches!(d.decode(b), Decoded::Message(_))
        });
        assert!(ok, "corpus message {i} did not decode");
    }
}

#[test]
fn malformed_origin_is_treat_as_withdraw_not_a_session_reset() {
    let params = UpdateParams {
        local_asn: 64512,
        ibgp: false,
        asn4: true,
        next_hop_v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
        next_hop_v6: None,
    };
    let changes = Changes {
        withdraw: vec![],
        announce: [(
            RouteAttrs::default(),
            vec!["198.51.100.1/32".parse().unwrap()],
        )]
        .into(),
    };
    let mut b = bytes(&params.build(&changes).unwrap()[0]);
    // ORIGIN: flags 0x40, type 1, length 1, value 0 (IGP) -> 9 (undefined).
    let at = b
        .windows(4)
        .position(|w| w == [0x40, 1, 1, 0])
        .expect("origin attribute")
        + 3;
    b[at] = 9;
    let mut d = Decoder::new();
    d.set_asn4(true);
    match d.decode(&b) {
        Decoded::TreatAsWithdraw(u) => assert_eq!(u.nlri().len(), 1),
        other => panic!("expected treat-as-withdraw, got {other:?}"),
    }
}

#[test]
fn shutdown_communication_is_length_prefixed_and_cut_at_a_character_boundary() {
    assert_eq!(&*shutdown_communication("hi"), &[2, b'h', b'i']);
    let long = "é".repeat(200); // 400 bytes
    let v = shutdown_communication(&long);
    assert_eq!(usize::from(v[0]), v.len() - 1);
    assert!(v.len() - 1 <= 255);
    assert!(std::str::from_utf8(&v[1..]).is_ok());
}

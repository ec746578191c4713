//! Fuzzes the BGP receive path: framing, decoding (both AS widths) and the session that
//! consumes the result. Run with `cargo +nightly fuzz run bgp_decode` from `fuzz/`.
//! The deterministic CI counterpart is `bgp/tests/bgp_codec.rs`.
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use herald_bgp::codec::{Decoded, Decoder, frame_len};
use herald_bgp::fsm::{Event, Session, SessionConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut session = Session::new(SessionConfig::new(64512, 64513, Ipv4Addr::new(192, 0, 2, 1)));
    session.handle(Event::RoutesChanged(Arc::new(HashMap::new())));
    session.handle(Event::ManualStart);
    session.handle(Event::TcpEstablished { local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)) });
    for asn4 in [false, true] {
        let mut decoder = Decoder::new();
        decoder.set_asn4(asn4);
        let _ = decoder.decode(data);
        let mut rest = data;
        while let Ok(Some(len)) = frame_len(rest) {
            let decoded: Decoded = decoder.decode(&rest[..len]);
            session.handle(Event::Received(decoded));
            rest = &rest[len..];
        }
    }
});

//! The session driver against itself over loopback TCP: two Herald speakers, one connecting,
//! one passive behind a [`Listener`]. Real daemons are in herald-tests (`tests/tests/bgp_*`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use herald_speaker::bgp::driver::{PeerConfig, PeerHandle, wait_for_status};
use herald_speaker::bgp::fsm::{SessionConfig, State};
use herald_speaker::bgp::listener::Listener;
use herald_speaker::bgp::route::{DesiredRoutes, RouteAttrs};
use herald_speaker::metrics::{Metrics, PeerLabel};
use prometheus_client::metrics::histogram::Histogram;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const DEADLINE: Duration = Duration::from_secs(20);

fn routes(n: u32) -> DesiredRoutes {
    (0..n)
        .map(|i| {
            (
                format!("198.18.{}.{}/32", i / 256, i % 256)
                    .parse()
                    .unwrap(),
                RouteAttrs::default(),
            )
        })
        .collect()
}

struct Pair {
    active: PeerHandle,
    passive: PeerHandle,
    _listener: Listener,
}

fn pair(active_pw: Option<&str>, passive_pw: Option<&str>, hold: u16) -> Pair {
    pair_observed(active_pw, passive_pw, hold, None)
}

/// As [`pair`]; the active side times its announcements into `announce_seconds`.
fn pair_observed(
    active_pw: Option<&str>,
    passive_pw: Option<&str>,
    hold: u16,
    announce_seconds: Option<Histogram>,
) -> Pair {
    let mut pcfg = SessionConfig::new(64513, 64512, Ipv4Addr::new(192, 0, 2, 2));
    pcfg.passive = true;
    pcfg.hold_time = hold;
    let mut passive = PeerConfig::new(pcfg, LOOPBACK);
    passive.password = passive_pw.map(str::to_owned);
    let passive = PeerHandle::spawn(passive).unwrap();
    passive.set_routes(HashMap::new());
    let listener = Listener::bind(SocketAddr::new(LOOPBACK, 0), &[&passive]).unwrap();

    let mut acfg = SessionConfig::new(64512, 64513, Ipv4Addr::new(192, 0, 2, 1));
    acfg.connect_retry = Duration::from_millis(200);
    acfg.hold_time = hold;
    let mut active = PeerConfig::new(acfg, LOOPBACK);
    active.peer_port = listener.local_addr().port();
    active.password = active_pw.map(str::to_owned);
    let active = match announce_seconds {
        Some(h) => PeerHandle::spawn_observed(active, h).unwrap(),
        None => PeerHandle::spawn(active).unwrap(),
    };
    Pair {
        active,
        passive,
        _listener: listener,
    }
}

#[tokio::test]
async fn two_speakers_establish_and_exchange_a_level_triggered_route_set() {
    let p = pair(None, None, 90);
    p.active.set_routes(routes(5000));
    let mut rx = p.passive.watch_status();
    let s = wait_for_status(&mut rx, DEADLINE, |s| s.prefixes_received == 5000).await;
    assert!(s.is_some(), "passive side saw {:?}", p.passive.status());
    assert_eq!(p.active.status().state, State::Established);
    assert_eq!(p.active.status().prefixes_sent, 5000);
    // 5000 /32 with equal attributes: packed, not one UPDATE per prefix (+ 2 end-of-rib).
    assert!(
        p.active.status().updates_sent <= 10,
        "{:?}",
        p.active.status()
    );

    // Shrink the set: the difference is withdrawn.
    p.active.set_routes(routes(10));
    let s = wait_for_status(&mut rx, DEADLINE, |s| s.prefixes_received == 10).await;
    assert!(s.is_some(), "passive side saw {:?}", p.passive.status());
    p.active.set_routes(HashMap::new());
    let s = wait_for_status(&mut rx, DEADLINE, |s| s.prefixes_received == 0).await;
    assert!(s.is_some(), "passive side saw {:?}", p.passive.status());
}

/// `herald_bgp_announce_seconds_count` for `peer`, as `/metrics` exposes it.
fn announce_count(m: &Metrics, peer: &str) -> u64 {
    let prefix = format!("herald_bgp_announce_seconds_count{{peer=\"{peer}\"}} ");
    m.encode()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test]
async fn routes_newly_desired_on_an_established_session_are_timed_until_written() {
    let m = Metrics::new();
    let histogram = m
        .bgp_announce_seconds
        .get_or_create(&PeerLabel {
            peer: "passive".into(),
        })
        .clone();
    let p = pair_observed(None, None, 90, Some(histogram));
    p.active.set_routes(routes(2));
    let mut rx = p.passive.watch_status();
    let s = wait_for_status(&mut rx, DEADLINE, |s| s.prefixes_received == 2).await;
    assert!(s.is_some(), "passive side saw {:?}", p.passive.status());
    assert_eq!(
        announce_count(&m, "passive"),
        0,
        "the table sent when the session comes up is not timed"
    );

    // Established: three more prefixes, each timed once its UPDATE is written.
    p.active.set_routes(routes(5));
    let s = wait_for_status(&mut rx, DEADLINE, |s| s.prefixes_received == 5).await;
    assert!(s.is_some(), "passive side saw {:?}", p.passive.status());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while announce_count(&m, "passive") < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(announce_count(&m, "passive"), 3, "{}", m.encode());

    // Withdrawing and resending the same set times only what is sent again.
    p.active.set_routes(routes(4));
    let s = wait_for_status(&mut rx, DEADLINE, |s| s.prefixes_received == 4).await;
    assert!(s.is_some(), "passive side saw {:?}", p.passive.status());
    assert_eq!(
        announce_count(&m, "passive"),
        3,
        "withdrawals are not timed"
    );
}

#[tokio::test]
async fn shutdown_sends_cease_with_the_communication_to_the_peer() {
    let p = pair(None, None, 90);
    p.active.set_routes(routes(1));
    let mut rx = p.passive.watch_status();
    assert!(
        wait_for_status(&mut rx, DEADLINE, |s| s.state == State::Established)
            .await
            .is_some()
    );
    let active = p.active.watch_status();
    p.active.shutdown("maintenance window").await;
    let s = wait_for_status(&mut rx, DEADLINE, |s| s.state != State::Established).await;
    let s = s.expect("passive session went down");
    assert_eq!(
        s.last_error.as_deref(),
        Some("received notification 6/2 (Cease, Administrative Shutdown) \"maintenance window\"")
    );
    // Counted by code and subcode on both sides (the metric herald_bgp_notifications_total).
    assert_eq!(s.notifications_received.get(&(6, 2)), Some(&1), "{s:?}");
    let sent = active.borrow().notifications_sent.clone();
    assert_eq!(sent.get(&(6, 2)), Some(&1), "{sent:?}");
}

#[tokio::test]
async fn matching_md5_passwords_establish() {
    let p = pair(Some("s3cret"), Some("s3cret"), 90);
    p.active.set_routes(routes(1));
    let mut rx = p.passive.watch_status();
    let s = wait_for_status(&mut rx, DEADLINE, |s| s.prefixes_received == 1).await;
    assert!(
        s.is_some(),
        "{:?} / {:?}",
        p.active.status(),
        p.passive.status()
    );
}

#[tokio::test]
async fn mismatched_md5_password_never_establishes() {
    // The matching pair in the same run establishes well within the window used here.
    let good = pair(Some("right"), Some("right"), 90);
    let bad = pair(Some("wrong"), Some("right"), 90);
    good.active.set_routes(routes(1));
    bad.active.set_routes(routes(1));
    let mut rx = good.passive.watch_status();
    assert!(
        wait_for_status(&mut rx, DEADLINE, |s| s.state == State::Established)
            .await
            .is_some()
    );
    let mut rx = bad.passive.watch_status();
    let seen = wait_for_status(&mut rx, Duration::from_secs(3), |s| {
        s.state == State::Established
    })
    .await;
    assert!(seen.is_none(), "wrong password established: {seen:?}");
    assert_eq!(bad.active.status().established_count, 0);
}

mod collision {
    //! RFC 4271 §6.8 with a scripted peer: Herald's outbound connection is in OpenSent when
    //! the peer's own connection arrives at Herald's listener with an OPEN.

    use super::*;
    use herald_speaker::bgp::codec::{Decoded, Decoder, encode, frame_len, notification_code};
    use herald_speaker::bgp::fsm::{Action, Event, Session};
    use netgauze_bgp_pkt::BgpMessage;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpSocket, TcpStream};

    pub(super) async fn read_message(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<BgpMessage> {
        loop {
            if let Ok(Some(len)) = frame_len(buf) {
                let mut d = Decoder::new();
                d.set_asn4(true);
                let m = match d.decode(&buf[..len]) {
                    Decoded::Message(m) => Some(m),
                    _ => None,
                };
                buf.drain(..len);
                return m;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(DEADLINE, s.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub(super) fn peer_open(router_id: Ipv4Addr) -> Vec<u8> {
        let mut s = Session::new(SessionConfig::new(64513, 64512, router_id));
        s.handle(Event::ManualStart);
        let open = s
            .handle(Event::TcpEstablished { local: LOOPBACK })
            .into_iter()
            .find_map(|a| match a {
                Action::Send(m @ BgpMessage::Open(_)) => Some(m),
                _ => None,
            })
            .unwrap();
        let mut out = Vec::new();
        encode(&open, &mut out).unwrap();
        out
    }

    /// Returns (what the peer got on Herald's outbound connection, on its own connection).
    async fn collide(herald_id: Ipv4Addr, peer_id: Ipv4Addr) -> (Vec<BgpMessage>, Vec<BgpMessage>) {
        let peer_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut cfg = SessionConfig::new(64512, 64513, herald_id);
        cfg.connect_retry = Duration::from_secs(30);
        let mut pc = PeerConfig::new(cfg, LOOPBACK);
        pc.peer_port = peer_listener.local_addr().unwrap().port();
        let herald = PeerHandle::spawn(pc).unwrap();
        herald.set_routes(HashMap::new());
        let listener = Listener::bind("127.0.0.3:0".parse().unwrap(), &[&herald]).unwrap();
        // Herald's outbound connection: take its OPEN, answer nothing yet (OpenSent).
        let (mut outbound, _) = peer_listener.accept().await.unwrap();
        let mut obuf = Vec::new();
        assert!(matches!(
            read_message(&mut outbound, &mut obuf).await,
            Some(BgpMessage::Open(_))
        ));
        // The peer's own connection, from 127.0.0.1, with its OPEN.
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut inbound = sock.connect(listener.local_addr()).await.unwrap();
        inbound.write_all(&peer_open(peer_id)).await.unwrap();
        let mut ibuf = Vec::new();
        let mut on_inbound = Vec::new();
        while let Some(m) = read_message(&mut inbound, &mut ibuf).await {
            let done = matches!(m, BgpMessage::Notification(_) | BgpMessage::KeepAlive);
            on_inbound.push(m);
            if done {
                break;
            }
        }
        let mut on_outbound = Vec::new();
        if matches!(on_inbound.last(), Some(BgpMessage::KeepAlive)) {
            // Herald switched: its outbound connection must carry the Cease.
            if let Some(m) = read_message(&mut outbound, &mut obuf).await {
                on_outbound.push(m);
            }
        }
        (on_outbound, on_inbound)
    }

    fn code(m: &BgpMessage) -> Option<(u8, u8)> {
        match m {
            BgpMessage::Notification(n) => Some(notification_code(n)),
            _ => None,
        }
    }

    #[tokio::test]
    async fn higher_local_identifier_keeps_our_connection_and_closes_the_peers() {
        let (_, on_inbound) =
            collide(Ipv4Addr::new(192, 0, 2, 200), Ipv4Addr::new(192, 0, 2, 100)).await;
        assert_eq!(on_inbound.len(), 1, "{on_inbound:?}");
        assert_eq!(code(&on_inbound[0]), Some((6, 7)));
    }

    #[tokio::test]
    async fn higher_peer_identifier_moves_the_session_to_the_peers_connection() {
        let (on_outbound, on_inbound) =
            collide(Ipv4Addr::new(192, 0, 2, 100), Ipv4Addr::new(192, 0, 2, 200)).await;
        assert!(
            matches!(on_inbound[..], [BgpMessage::Open(_), BgpMessage::KeepAlive]),
            "{on_inbound:?}"
        );
        assert_eq!(
            on_outbound.first().and_then(code),
            Some((6, 7)),
            "{on_outbound:?}"
        );
    }
}

mod malformed {
    //! RFC 7606 on a live session: a scripted peer announces a prefix, then sends the same
    //! prefix with one attribute of the wrong length. The session stays Established, the
    //! prefix counts as withdrawn, and a ROUTE-REFRESH afterwards is still answered.

    use super::collision::{peer_open, read_message};
    use super::*;
    use herald_speaker::bgp::codec::{encode, notification_code};
    use netgauze_bgp_pkt::BgpMessage;
    use netgauze_bgp_pkt::iana::RouteRefreshSubcode;
    use netgauze_bgp_pkt::route_refresh::BgpRouteRefreshMessage;
    use netgauze_iana::address_family::AddressType;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// An UPDATE for 198.51.100.1/32 with ORIGIN, a 4-octet AS_PATH, NEXT_HOP and `extra`
    /// (flags, type, value), which replaces the attribute of its type if there is one.
    fn update(extra: Option<(u8, u8, &[u8])>) -> Vec<u8> {
        let mut attrs: Vec<(u8, u8, Vec<u8>)> = vec![
            (0x40, 1, vec![0]),
            (0x40, 2, vec![2, 1, 0, 0, 0xfc, 0x01]),
            (0x40, 3, vec![127, 0, 0, 1]),
        ];
        if let Some((flags, code, value)) = extra {
            match attrs.iter().position(|a| a.1 == code) {
                Some(i) => attrs[i] = (flags, code, value.to_vec()),
                None => attrs.push((flags, code, value.to_vec())),
            }
        }
        let mut field = Vec::new();
        for (flags, code, value) in attrs {
            field.extend_from_slice(&[flags, code, value.len() as u8]);
            field.extend_from_slice(&value);
        }
        let nlri = [32, 198, 51, 100, 1];
        let mut f = vec![0xff; 16];
        f.extend_from_slice(&((19 + 4 + field.len() + nlri.len()) as u16).to_be_bytes());
        f.push(2);
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&(field.len() as u16).to_be_bytes());
        f.extend_from_slice(&field);
        f.extend_from_slice(&nlri);
        f
    }

    #[tokio::test]
    async fn malformed_attribute_lengths_withdraw_the_prefix_and_the_session_stays_up() {
        let peer_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut cfg = SessionConfig::new(64512, 64513, Ipv4Addr::new(192, 0, 2, 1));
        cfg.connect_retry = Duration::from_millis(200);
        let mut pc = PeerConfig::new(cfg, LOOPBACK);
        pc.peer_port = peer_listener.local_addr().unwrap().port();
        let herald = PeerHandle::spawn(pc).unwrap();
        herald.set_routes(routes(1));
        let (mut conn, _) = tokio::time::timeout(DEADLINE, peer_listener.accept())
            .await
            .unwrap()
            .unwrap();
        let mut buf = Vec::new();
        assert!(matches!(
            read_message(&mut conn, &mut buf).await,
            Some(BgpMessage::Open(_))
        ));
        conn.write_all(&peer_open(Ipv4Addr::new(192, 0, 2, 9)))
            .await
            .unwrap();
        let mut keepalive = Vec::new();
        encode(&BgpMessage::KeepAlive, &mut keepalive).unwrap();
        conn.write_all(&keepalive).await.unwrap();
        let mut rx = herald.watch_status();
        assert!(
            wait_for_status(&mut rx, DEADLINE, |s| s.state == State::Established)
                .await
                .is_some(),
            "{:?}",
            herald.status()
        );

        let cases: [(&str, u8, u8, &[u8]); 4] = [
            ("ORIGIN of length 2", 0x40, 1, &[0, 0]),
            ("NEXT_HOP of length 5", 0x40, 3, &[127, 0, 0, 1, 0]),
            ("COMMUNITIES of length 3", 0xc0, 8, &[0xfc, 0, 7]),
            ("LARGE_COMMUNITY of length 13", 0xc0, 32, &[0; 13]),
        ];
        for (case, flags, code, value) in cases {
            conn.write_all(&update(None)).await.unwrap();
            assert!(
                wait_for_status(&mut rx, DEADLINE, |s| s.prefixes_received == 1)
                    .await
                    .is_some(),
                "{case}: the well-formed announcement was not counted: {:?}",
                herald.status()
            );
            conn.write_all(&update(Some((flags, code, value))))
                .await
                .unwrap();
            let s = wait_for_status(&mut rx, DEADLINE, |s| {
                s.prefixes_received == 0 || s.state != State::Established
            })
            .await
            .unwrap_or_else(|| herald.status());
            assert_eq!(
                (s.state, s.prefixes_received),
                (State::Established, 0),
                "{case}: {s:?}"
            );
        }

        // ROUTE-REFRESH still answered: our route comes again, then End-of-RIB.
        let mut refresh = Vec::new();
        encode(
            &BgpMessage::RouteRefresh(BgpRouteRefreshMessage::new(
                AddressType::Ipv4Unicast,
                RouteRefreshSubcode::NormalRequest,
            )),
            &mut refresh,
        )
        .unwrap();
        conn.write_all(&refresh).await.unwrap();
        let mut announced = false;
        // Bounded: each read waits at most DEADLINE; at most 50 messages looked at.
        for _ in 0..50 {
            match read_message(&mut conn, &mut buf).await {
                Some(BgpMessage::Update(u)) if !u.nlri().is_empty() => {
                    announced = true;
                    break;
                }
                Some(BgpMessage::Notification(n)) => {
                    panic!("NOTIFICATION {:?}", notification_code(&n))
                }
                Some(_) => {}
                None => break,
            }
        }
        assert!(announced, "no UPDATE answered the ROUTE-REFRESH");
        assert_eq!(herald.status().state, State::Established);
    }
}

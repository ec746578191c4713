//! The session driver against itself over loopback TCP: two Herald speakers, one connecting,
//! one passive behind a [`Listener`]. Real daemons are in herald-tests (`tests/tests/bgp_*`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use herald_speaker::bgp::driver::{PeerConfig, PeerHandle, wait_for_status};
use herald_speaker::bgp::fsm::{SessionConfig, State};
use herald_speaker::bgp::listener::Listener;
use herald_speaker::bgp::route::{DesiredRoutes, RouteAttrs};

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
    let active = PeerHandle::spawn(active).unwrap();
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
    p.active.shutdown("maintenance window").await;
    let s = wait_for_status(&mut rx, DEADLINE, |s| s.state != State::Established).await;
    let s = s.expect("passive session went down");
    assert_eq!(
        s.last_error.as_deref(),
        Some("received notification 6/2 \"maintenance window\"")
    );
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

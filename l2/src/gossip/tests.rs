//! Gossip between in-process members on loopback: joining, facts, authentication, failure
//! detection.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::{Instant, timeout};

use super::seal::GossipKey;
use super::*;

fn config(name: &str, key: [u8; 32], seeds: Vec<SocketAddr>) -> GossipConfig {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    GossipConfig {
        name: name.to_owned(),
        bind: any,
        advertise: any,
        seeds,
        key: GossipKey::new(key),
        timing: SwimTiming::default(),
        facts_interval: Duration::from_millis(500),
        realtime: false,
    }
}

/// Waits (bounded) until `gossip`'s membership satisfies `pred`; returns it.
async fn wait_for(gossip: &Gossip, what: &str, pred: impl Fn(&Membership) -> bool) -> Membership {
    let mut rx = gossip.membership();
    let result = timeout(Duration::from_secs(10), async {
        loop {
            if pred(&rx.borrow_and_update()) {
                return rx.borrow().clone();
            }
            rx.changed().await.expect("gossip task alive");
        }
    })
    .await;
    result.unwrap_or_else(|_| panic!("timed out waiting for {what}: {:?}", rx.borrow()))
}

fn links(l: &[&str]) -> BTreeSet<String> {
    l.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn members_join_through_a_seed_and_learn_each_others_links() {
    let a = Gossip::spawn(config("a", [1; 32], vec![])).await.unwrap();
    let b = Gossip::spawn(config("b", [1; 32], vec![a.local_addr()]))
        .await
        .unwrap();
    a.set_links(links(&["eth0"]));
    b.set_links(links(&["eth1"]));
    let seen = wait_for(&a, "b with its links", |m| {
        m.live.get("b") == Some(&links(&["eth1"]))
    })
    .await;
    assert_eq!(seen.live.get("a"), Some(&links(&["eth0"])));
    wait_for(&b, "a with its links", |m| {
        m.live.get("a") == Some(&links(&["eth0"]))
    })
    .await;
}

#[tokio::test]
async fn a_member_with_another_key_is_never_admitted() {
    let a = Gossip::spawn(config("a", [1; 32], vec![])).await.unwrap();
    let intruder = Gossip::spawn(config("x", [2; 32], vec![a.local_addr()]))
        .await
        .unwrap();
    // A legitimate member joining later proves a is listening and answering meanwhile.
    let b = Gossip::spawn(config("b", [1; 32], vec![a.local_addr()]))
        .await
        .unwrap();
    wait_for(&a, "b to join", |m| m.live.contains_key("b")).await;
    // The intruder announces every second; give it two tries.
    let until = Instant::now() + Duration::from_millis(2100);
    let mut rx = a.membership();
    while Instant::now() < until {
        assert!(
            !rx.borrow_and_update().live.contains_key("x"),
            "intruder admitted"
        );
        let _ = timeout(until - Instant::now(), rx.changed()).await;
    }
    assert_eq!(
        intruder
            .membership()
            .borrow()
            .live
            .keys()
            .collect::<Vec<_>>(),
        vec!["x"],
        "the intruder learns nobody"
    );
    drop(b);
}

#[tokio::test]
async fn a_member_that_stops_is_declared_down_quickly() {
    let a = Gossip::spawn(config("a", [1; 32], vec![])).await.unwrap();
    let b = Gossip::spawn(config("b", [1; 32], vec![a.local_addr()]))
        .await
        .unwrap();
    let c = Gossip::spawn(config("c", [1; 32], vec![a.local_addr()]))
        .await
        .unwrap();
    wait_for(&a, "b and c", |m| m.live.len() == 3).await;
    wait_for(&c, "a and b", |m| m.live.len() == 3).await;
    let stopped = Instant::now();
    drop(b);
    wait_for(&a, "b to be declared down", |m| !m.live.contains_key("b")).await;
    wait_for(&c, "b to be declared down", |m| !m.live.contains_key("b")).await;
    // Generous bound (CI machines are shared); the benchmark measures the real figure.
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
}

#[tokio::test]
async fn leaving_gracefully_removes_the_member_at_once() {
    let a = Gossip::spawn(config("a", [1; 32], vec![])).await.unwrap();
    let b = Gossip::spawn(config("b", [1; 32], vec![a.local_addr()]))
        .await
        .unwrap();
    wait_for(&a, "b", |m| m.live.contains_key("b")).await;
    b.leave();
    wait_for(&a, "b to leave", |m| !m.live.contains_key("b")).await;
    // b stays out: it does not rejoin through its seed (join attempts run every second).
    let until = Instant::now() + Duration::from_millis(2100);
    let mut rx = a.membership();
    while Instant::now() < until {
        assert!(!rx.borrow_and_update().live.contains_key("b"), "b rejoined");
        let _ = timeout(until - Instant::now(), rx.changed()).await;
    }
}

#[test]
fn the_settings_reproduce_the_defaults_and_refuse_nonsense() {
    let ms = Duration::from_millis;
    assert_eq!(
        SwimTiming::from_settings(ms(15), ms(60)),
        Ok(SwimTiming::default())
    );
    let slow = SwimTiming::from_settings(Duration::from_secs(1), Duration::from_secs(4)).unwrap();
    assert_eq!((slow.probe_rtt, slow.gossip_interval), (ms(400), ms(500)));
    assert!(SwimTiming::from_settings(ms(10), ms(10)).is_ok());
    for (probe, suspect, msg) in [
        (ms(5), ms(200), "probe interval 5ms is outside 10ms..=60s"),
        (
            ms(61_000),
            ms(61_000),
            "probe interval 61s is outside 10ms..=60s",
        ),
        (
            ms(200),
            ms(100),
            "suspect timeout 100ms must be at least the probe interval (200ms) and at most 60s",
        ),
        (
            ms(100),
            ms(60_001),
            "suspect timeout 60.001s must be at least the probe interval (100ms) and at most 60s",
        ),
    ] {
        let err = SwimTiming::from_settings(probe, suspect).unwrap_err();
        assert_eq!(err.to_string(), msg);
    }
}

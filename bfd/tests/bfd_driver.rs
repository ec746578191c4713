//! The BFD driver against itself over loopback (127.0.0.1 and 127.0.0.2, single hop): a
//! planned stop tells the peer AdminDown at once, so the peer goes Down well before its
//! detection time would have taken it there.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use herald_bfd::driver::{BfdConfig, BfdHandle};
use herald_bfd::packet::State;
use herald_bfd::profile::Profile;
use herald_bfd::transport::Hop;

fn profile() -> Profile {
    // 300 ms × 3: a silent peer is declared down after 900 ms.
    let spec: herald_api::BFDProfileSpec = serde_json::from_value(serde_json::json!({
        "receiveInterval": 300, "transmitInterval": 300, "detectMultiplier": 3
    }))
    .unwrap();
    Profile::from(&spec)
}

fn handle(local: &str, peer: &str) -> BfdHandle {
    BfdHandle::spawn(BfdConfig {
        peer: peer.parse::<IpAddr>().unwrap(),
        local: local.parse::<IpAddr>().unwrap(),
        hop: Hop::Single,
        profile: profile(),
    })
    .unwrap()
}

async fn wait_state(h: &BfdHandle, want: State, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut rx = h.watch_status();
    let r = tokio::time::timeout(within, rx.wait_for(|s| s.state == want)).await;
    r.ok().map(|_| start.elapsed())
}

#[tokio::test]
async fn a_planned_stop_says_admin_down_and_the_peer_goes_down_before_detection() {
    let a = handle("127.0.0.1", "127.0.0.2");
    let b = handle("127.0.0.2", "127.0.0.1");
    assert!(
        wait_state(&a, State::Up, Duration::from_secs(10))
            .await
            .is_some(),
        "a: {:?}",
        a.status()
    );
    assert!(
        wait_state(&b, State::Up, Duration::from_secs(10))
            .await
            .is_some()
    );
    let b_status = b.watch_status();
    a.admin_down(Duration::from_millis(500)).await;
    // The AdminDown packet takes b Down at once; silence alone would take 900 ms.
    let mut rx = b_status;
    let start = Instant::now();
    let down = tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|s| s.state != State::Up),
    )
    .await;
    let elapsed = start.elapsed();
    assert!(down.is_ok(), "b never left Up: {:?}", b.status());
    assert!(
        elapsed < Duration::from_millis(600),
        "b went down after {elapsed:?}, as by detection, not AdminDown"
    );
}

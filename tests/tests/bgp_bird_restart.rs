//! Graceful restart and ECMP against BIRD 2, with herald-bgp's `bgp-speaker` example processes as Herald
//! speakers. (eBGP multihop goes through `herald-speaker`: `standalone_peers.rs`.)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use herald_tests::bird::Bird;
use herald_tests::lab::HeraldLab;
use herald_tests::{Netns, require_privileged, veth_pair, wait_until};

const DEADLINE: Duration = Duration::from_secs(30);

fn wait_count(bird: &Bird, proto: &str, want: usize) {
    wait_until(
        &format!("{want} routes from {proto} in bird"),
        DEADLINE,
        || match bird.route_count(proto) {
            Ok(n) if n == want => Ok(()),
            Ok(n) => Err(format!("{n} routes\n{}", bird.protocol(proto))),
            Err(out) => Err(out),
        },
    );
}

fn wait_established(bird: &Bird, proto: &str) {
    wait_until(&format!("bird {proto} Established"), DEADLINE, || {
        if bird.established(proto) {
            Ok(())
        } else {
            Err(bird.protocol(proto))
        }
    });
}

#[test]
fn graceful_restart_keeps_routes_through_a_crash_and_reannounces_without_withdrawal() {
    require_privileged!();
    let spk = Netns::new("bgpgr-s");
    let peer = Netns::new("bgpgr-b");
    veth_pair(&spk, &["10.0.0.1/24"], &peer, &["10.0.0.2/24"]);
    let log = tempfile::NamedTempFile::new().expect("log file");
    let bird = Bird::start(
        &peer,
        &format!(
            "
log \"{}\" all;
router id 10.0.0.2;
protocol device {{ }}
protocol bgp hrd {{
  local 10.0.0.2 as 64513;
  neighbor 10.0.0.1 as 64512;
  passive on;
  graceful restart on;
  error wait time 1, 5;
  debug {{ routes }};
  ipv4 {{ import all; export none; }};
}}
",
            log.path().display()
        ),
    );
    let config = "local-as 64512
router-id 192.0.2.1
peer 10.0.0.2 as 64513
routes4 198.18.0.0 500";
    let mut lab = HeraldLab::start(&spk, config);
    wait_count(&bird, "hrd", 500);

    // Crash: the TCP connection drops, BIRD keeps the routes as stale (RFC 4724 §4.2).
    lab.kill();
    wait_until("bird to notice the session is gone", DEADLINE, || {
        if bird.established("hrd") {
            Err(bird.protocol("hrd"))
        } else {
            Ok(())
        }
    });
    assert_eq!(bird.route_count("hrd"), Ok(500), "{}", bird.protocol("hrd"));

    // Watch the count from now on: it must never drop while the speaker comes back.
    let min_seen = AtomicUsize::new(usize::MAX);
    let stop = AtomicBool::new(false);
    let mut lab = std::thread::scope(|scope| {
        scope.spawn(|| {
            let deadline = std::time::Instant::now() + DEADLINE;
            while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                if let Ok(n) = bird.route_count("hrd") {
                    min_seen.fetch_min(n, Ordering::Relaxed);
                }
            }
        });
        let lab = lab.restart(&spk, config);
        wait_established(&bird, "hrd");
        // After End-of-RIB BIRD flushes what was not refreshed; wait until the restart is over.
        wait_until("bird's graceful restart to finish", DEADLINE, || {
            let p = bird.protocol("hrd");
            if p.contains("Established") && !p.to_lowercase().contains("stale") {
                Ok(())
            } else {
                Err(p)
            }
        });
        stop.store(true, Ordering::Relaxed);
        lab
    });
    assert_eq!(bird.route_count("hrd"), Ok(500));
    assert_eq!(
        min_seen.load(Ordering::Relaxed),
        500,
        "a route disappeared during the restart"
    );
    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
    let removed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("198.18.") && l.contains("removed"))
        .collect();
    assert!(
        removed.is_empty(),
        "withdrawals seen at the peer: {removed:?}"
    );

    // Restart with an empty desired set: End-of-RIB alone flushes the stale routes.
    lab.kill();
    wait_until("bird to notice the session is gone", DEADLINE, || {
        if bird.established("hrd") {
            Err(bird.protocol("hrd"))
        } else {
            Ok(())
        }
    });
    let _lab = lab.restart(
        &spk,
        "local-as 64512
router-id 192.0.2.1
peer 10.0.0.2 as 64513",
    );
    wait_count(&bird, "hrd", 0);
    // The same log shows withdrawals when they happen: the check above can fail.
    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
    assert!(
        text.lines()
            .any(|l| l.contains("198.18.") && l.contains("removed")),
        "bird's route log shows no removals even now:\n{text}"
    );
}

#[test]
fn three_speakers_announcing_one_address_give_the_router_three_next_hops() {
    require_privileged!();
    let router = Netns::new("bgpecmp-r");
    let mut speakers = Vec::new();
    let mut labs = Vec::new();
    let mut protocols = String::new();
    for i in 1..=3 {
        let ns = Netns::new(&format!("bgpecmp-{i}"));
        veth_pair(
            &ns,
            &[&format!("10.0.{i}.1/24")],
            &router,
            &[&format!("10.0.{i}.2/24")],
        );
        protocols.push_str(&format!(
            "protocol bgp spk{i} {{
  local 10.0.{i}.2 as 64513; neighbor 10.0.{i}.1 as 64512; passive on;
  ipv4 {{ import all; export none; }};
}}
"
        ));
        speakers.push(ns);
    }
    let bird = Bird::start(
        &router,
        &format!(
            "router id 10.0.0.2;
protocol device {{ }}
protocol kernel {{ ipv4 {{ export all; }}; merge paths on; }}
{protocols}"
        ),
    );
    for (i, ns) in speakers.iter().enumerate() {
        labs.push(HeraldLab::start(
            ns,
            &format!(
                "local-as 64512
router-id 192.0.2.{}
peer 10.0.{}.2 as 64513
route 198.51.100.10/32",
                i + 1,
                i + 1
            ),
        ));
    }
    let route = wait_until(
        "three next hops in the router's kernel table",
        DEADLINE,
        || {
            let r = router.ip(&["route", "show", "198.51.100.10/32"]);
            let hops = (1..=3)
                .filter(|i| r.contains(&format!("via 10.0.{i}.1")))
                .count();
            if hops == 3 {
                Ok(r)
            } else {
                Err(format!("{r}\n{}", bird.birdc(&["show", "route", "all"])))
            }
        },
    );
    assert_eq!(route.matches("nexthop").count(), 3, "{route}");
}

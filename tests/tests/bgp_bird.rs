//! Herald's BGP library against BIRD 2: sessions, attributes, scale, hold timer,
//! NOTIFICATION on close, route refresh, connection collision. The `BGPPeer` fields (password,
//! passive, GTSM, multihop, source address, BFD) are tried through `herald-speaker` instead:
//! `standalone_peers.rs`, `standalone_bfd.rs`, `standalone_frr.rs`.
//!
//! Topology: a speaker namespace and a BIRD namespace joined by a veth pair
//! (10.0.0.1/24 + fd00::1/64 on the speaker side, 10.0.0.2/24 + fd00::2/64 on BIRD's).
//! The speaker is herald-bgp's `bgp-speaker` example (the library, configured by a file).

use std::time::Duration;

use herald_tests::bird::Bird;
use herald_tests::lab::HeraldLab;
use herald_tests::{Netns, require_privileged, veth_pair, wait_until};
use nix::sys::signal::Signal;

const DEADLINE: Duration = Duration::from_secs(30);

struct Topo {
    spk: Netns,
    peer: Netns,
}

fn topo(tag: &str) -> Topo {
    let spk = Netns::new(&format!("{tag}-s"));
    let peer = Netns::new(&format!("{tag}-b"));
    veth_pair(
        &spk,
        &["10.0.0.1/24", "fd00::1/64"],
        &peer,
        &["10.0.0.2/24", "fd00::2/64"],
    );
    Topo { spk, peer }
}

const BIRD_BASE: &str = "
router id 10.0.0.2;
protocol device { }
protocol direct { ipv4; ipv6; }
";

fn bird_ebgp(extra: &str) -> String {
    format!(
        "{BIRD_BASE}
protocol bgp hrd {{
  local 10.0.0.2 as 64513;
  neighbor 10.0.0.1 as 64512;
  passive on;
  graceful restart on;
  error wait time 1, 5;
  {extra}
  ipv4 {{ import all; export none; }};
  ipv6 {{ import all; export none; }};
}}
"
    )
}

fn wait_established(bird: &Bird, proto: &str) {
    wait_until(
        &format!("bird protocol {proto} Established"),
        DEADLINE,
        || {
            if bird.established(proto) {
                Ok(())
            } else {
                Err(bird.protocol(proto))
            }
        },
    );
}

fn wait_count(bird: &Bird, proto: &str, want: usize) {
    wait_until(
        &format!("{want} routes from {proto} in bird"),
        Duration::from_secs(60),
        || match bird.route_count(proto) {
            Ok(n) if n == want => Ok(()),
            Ok(n) => Err(format!("{n} routes")),
            Err(out) => Err(out),
        },
    );
}

/// The block of `show route ... all` output for `prefix`.
fn route_block(out: &str, prefix: &str) -> Option<String> {
    let mut lines = out.lines().skip_while(|l| !l.starts_with(prefix));
    let first = lines.next()?;
    let mut block = vec![first];
    block.extend(lines.take_while(|l| l.starts_with(char::is_whitespace)));
    Some(block.join("\n"))
}

fn wait_route(bird: &Bird, proto: &str, prefix: &str) -> String {
    wait_until(&format!("{prefix} from {proto} in bird"), DEADLINE, || {
        route_block(&bird.routes(proto), prefix).ok_or_else(|| bird.routes(proto))
    })
}

#[test]
fn ebgp_and_ibgp_sessions_deliver_host_routes_with_next_hop_origin_as_path_and_communities() {
    require_privileged!();
    let t = topo("bgpb1");
    let bird = Bird::start(
        &t.peer,
        &format!(
            "{}
protocol bgp hrdi {{
  local fd00::2 as 64512;
  neighbor fd00::1 as 64512;
  direct;
  passive on;
  error wait time 1, 5;
  ipv4 {{ import all; export none; }};
  ipv6 {{ import all; export none; }};
}}
",
            bird_ebgp("")
        ),
    );
    // eBGP over IPv4 carries IPv6 too (next hop configured); iBGP over IPv6 carries IPv4.
    let _lab = HeraldLab::start(
        &t.spk,
        "local-as 64512
router-id 192.0.2.1
peer 10.0.0.2 as 64513
next-hop-v6 fd00::1
peer fd00::2 as 64512
next-hop-v4 10.0.0.1
route 198.51.100.1/32 community 64512:100 large 64512:1:2 local-pref 200
route 2001:db8:100::1/128 community 64512:100 large 64512:1:2 local-pref 200",
    );
    wait_established(&bird, "hrd");
    wait_established(&bird, "hrdi");

    let v4 = wait_route(&bird, "hrd", "198.51.100.1/32");
    for want in [
        "BGP.origin: IGP",
        "BGP.as_path: 64512",
        "BGP.next_hop: 10.0.0.1",
        "BGP.community: (64512,100)",
        "BGP.large_community: (64512, 1, 2)",
    ] {
        assert!(v4.contains(want), "missing {want:?} in\n{v4}");
    }
    assert!(
        !v4.contains("BGP.local_pref: 200"),
        "local-pref leaked to eBGP:\n{v4}"
    );
    let v6 = wait_route(&bird, "hrd", "2001:db8:100::1/128");
    for want in [
        "BGP.origin: IGP",
        "BGP.as_path: 64512",
        "BGP.next_hop: fd00::1",
        "BGP.large_community: (64512, 1, 2)",
    ] {
        assert!(v6.contains(want), "missing {want:?} in\n{v6}");
    }

    let ibgp = bird.routes("hrdi");
    let v4 = wait_route(&bird, "hrdi", "198.51.100.1/32");
    for want in [
        "BGP.origin: IGP",
        "BGP.next_hop: 10.0.0.1",
        "BGP.local_pref: 200",
        "BGP.community: (64512,100)",
    ] {
        assert!(v4.contains(want), "missing {want:?} in\n{v4}\n{ibgp}");
    }
    let as_path = v4
        .lines()
        .find(|l| l.contains("BGP.as_path:"))
        .expect("as_path line");
    assert_eq!(as_path.trim(), "BGP.as_path:", "iBGP path must be empty");
    let v6 = wait_route(&bird, "hrdi", "2001:db8:100::1/128");
    assert!(v6.contains("BGP.next_hop: fd00::1"), "{v6}");
    assert!(v6.contains("BGP.local_pref: 200"), "{v6}");
}

#[test]
fn twenty_thousand_prefixes_are_announced_and_then_all_withdrawn() {
    require_privileged!();
    let t = topo("bgpb5");
    let bird = Bird::start(&t.peer, &bird_ebgp(""));
    let base = "local-as 64512
router-id 192.0.2.1
peer 10.0.0.2 as 64513
next-hop-v6 fd00::1";
    let lab = HeraldLab::start(
        &t.spk,
        &format!("{base}\nroutes4 198.18.0.0 20000\nroutes6 2001:db8:1:: 2000"),
    );
    wait_count(&bird, "hrd", 22_000);
    lab.set_config(base);
    wait_count(&bird, "hrd", 0);
    assert!(bird.established("hrd"), "the session stays up");
}

#[test]
fn hold_timer_expiry_closes_the_session_with_a_notification() {
    require_privileged!();
    let t = topo("bgpb9h");
    let bird = Bird::start(&t.peer, &bird_ebgp("hold time 3;"));
    let lab = HeraldLab::start(
        &t.spk,
        "local-as 64512
router-id 192.0.2.1
peer 10.0.0.2 as 64513
hold 3
route 198.51.100.1/32",
    );
    wait_established(&bird, "hrd");
    // BIRD frozen: no KEEPALIVE reaches Herald, whose hold timer expires.
    bird.daemon().signal(Signal::SIGSTOP);
    let result = std::panic::catch_unwind(|| {
        wait_until("herald's hold timer to expire", DEADLINE, || {
            match lab.field("10.0.0.2", "last_error") {
                Some(e) if e == "hold_timer_expired" => Ok(()),
                other => Err(format!("{other:?}: {}", lab.status())),
            }
        })
    });
    bird.daemon().signal(Signal::SIGCONT);
    result.unwrap();
    wait_until("bird to see the notification", DEADLINE, || {
        let p = bird.protocol("hrd");
        if p.contains("Hold timer expired") {
            Ok(())
        } else {
            Err(p)
        }
    });
    // And the session comes back.
    wait_established(&bird, "hrd");
}

#[test]
fn stopping_the_speaker_sends_cease_with_shutdown_communication() {
    require_privileged!();
    let t = topo("bgpb9n");
    let bird = Bird::start(&t.peer, &bird_ebgp(""));
    let mut lab = HeraldLab::start(
        &t.spk,
        "local-as 64512
router-id 192.0.2.1
peer 10.0.0.2 as 64513
route 198.51.100.1/32",
    );
    wait_established(&bird, "hrd");
    lab.signal(Signal::SIGTERM);
    wait_until("bird to see the cease", DEADLINE, || {
        let p = bird.protocol("hrd");
        if p.contains("Administrative shutdown") && p.contains("bgp-speaker stopping") {
            Ok(())
        } else {
            Err(p)
        }
    });
    wait_until("the lab to exit", DEADLINE, || {
        if lab.has_exited() {
            Ok(())
        } else {
            Err("running".into())
        }
    });
}

#[test]
fn route_refresh_from_the_peer_resends_the_routes() {
    require_privileged!();
    let t = topo("bgpb9r");
    let bird = Bird::start(&t.peer, &bird_ebgp(""));
    let lab = HeraldLab::start(
        &t.spk,
        "local-as 64512
router-id 192.0.2.1
peer 10.0.0.2 as 64513
routes4 198.18.0.0 100",
    );
    wait_count(&bird, "hrd", 100);
    let updates = |lab: &HeraldLab| -> u64 {
        lab.field("10.0.0.2", "updates")
            .and_then(|u| u.parse().ok())
            .unwrap_or(0)
    };
    let before = wait_until("updates counted", DEADLINE, || match updates(&lab) {
        0 => Err(lab.status()),
        n => Ok(n),
    });
    // `reload in` makes BIRD send ROUTE-REFRESH (RFC 2918) to Herald.
    let out = bird.birdc(&["reload", "in", "hrd"]);
    assert!(out.contains("reload"), "{out}");
    wait_until("herald to answer the refresh", DEADLINE, || {
        if updates(&lab) > before {
            Ok(())
        } else {
            Err(lab.status())
        }
    });
    wait_count(&bird, "hrd", 100);
}

#[test]
fn both_sides_connecting_and_listening_end_in_one_session_whichever_identifier_is_higher() {
    require_privileged!();
    // BIRD (router id 10.0.0.2) and Herald both connect and both listen; Herald's identifier
    // is higher in the first round and lower in the second. Whether the connections actually
    // collide depends on timing; the deterministic RFC 4271 §6.8 cases are in
    // speaker/tests/bgp_session.rs.
    for (round, router_id) in ["192.0.2.1", "1.1.1.1"].into_iter().enumerate() {
        let t = topo(&format!("bgpbc{round}"));
        let bird = Bird::start(
            &t.peer,
            &format!(
                "{BIRD_BASE}
protocol bgp hrd {{
  local 10.0.0.2 as 64513; neighbor 10.0.0.1 as 64512;
  connect delay time 1; connect retry time 1; error wait time 1, 5;
  ipv4 {{ import all; export none; }};
}}
"
            ),
        );
        let lab = HeraldLab::start(
            &t.spk,
            &format!(
                "local-as 64512
router-id {router_id}
peer 10.0.0.2 as 64513
listen 10.0.0.1:179
route 198.51.100.1/32"
            ),
        );
        wait_established(&bird, "hrd");
        wait_route(&bird, "hrd", "198.51.100.1/32");
        wait_until("herald established", DEADLINE, || {
            match lab.field("10.0.0.2", "state").as_deref() {
                Some("established") => Ok(()),
                _ => Err(lab.status()),
            }
        });
    }
}

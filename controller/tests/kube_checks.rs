//! The controller's checks across configuration objects, end to end against the fake API
//! server: the `Valid` condition on a `BGPPeer` that names a missing `BFDProfile`, and
//! overlapping `IPPool`s, where the later one hands out nothing; and from the nodes'
//! `HeraldNode`s, each Service's `herald.dev/Announced` condition and each `BGPPeer`'s
//! sessions.

mod fakeapi;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use fakeapi::{
    BFDPROFILES, BGPADVERTISEMENTS, BGPPEERS, EVENTS, FakeApi, HERALDNODES, IPPOOLS, NAMESPACES,
    SERVICES, ingress, lb_service,
};
use herald_controller::context::Settings;
use herald_controller::metrics::Metrics;
use herald_controller::run::run;
use herald_ipam::convert::LbClass;
use serde_json::{Value, json};
use tokio::sync::watch;

const DEADLINE: Duration = Duration::from_secs(10);

struct Running {
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the controller did not stop")
            .unwrap()
            .unwrap();
    }
}

fn start(api: &FakeApi) -> Running {
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(run(
        api.client(),
        Settings {
            lb_class: LbClass::default(),
            instance: "c0".to_owned(),
        },
        None,
        Arc::new(Metrics::new()),
        Arc::new(AtomicBool::new(false)),
        rx,
    ));
    Running { shutdown, task }
}

fn herald(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "herald.dev/v1alpha1", "kind": kind,
           "metadata": {"name": name}, "spec": spec})
}

/// The condition of `type_` on an object, if any.
fn condition(obj: &Value, type_: &str) -> Option<Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

fn events(api: &FakeApi, name: &str, reason: &str) -> usize {
    api.count(EVENTS, |e| {
        e["regarding"]["name"] == name && e["reason"] == reason
    })
}

#[tokio::test]
async fn a_peer_naming_a_missing_bfd_profile_is_not_valid_until_the_profile_is_created() {
    let api = FakeApi::new();
    api.insert(NAMESPACES, fakeapi::namespace("default"));
    api.insert(
        BGPPEERS,
        herald(
            "BGPPeer",
            "tor",
            json!({"peerAddress": "192.0.2.1", "peerASN": 65001, "myASN": 65000,
                   "bfdProfile": "fast"}),
        ),
    );
    api.insert(
        BGPADVERTISEMENTS,
        herald("BGPAdvertisement", "adv", json!({"peers": ["tor"]})),
    );
    let c = start(&api);
    let peer_valid = |a: &FakeApi| {
        a.get(BGPPEERS, "", "tor")
            .and_then(|p| condition(&p, "Valid"))
    };
    assert!(
        api.wait_for(DEADLINE, |a| peer_valid(a)
            .is_some_and(|c| c["status"] == "False"))
            .await,
        "no Valid=False on the peer: {:?}",
        api.get(BGPPEERS, "", "tor")
    );
    let cond = peer_valid(&api).unwrap();
    assert_eq!(cond["reason"], "MissingReference");
    let message = cond["message"].as_str().unwrap();
    assert!(
        message.contains("spec.bfdProfile") && message.contains("\"fast\""),
        "{message}"
    );
    assert_eq!(cond["observedGeneration"], 1);
    assert!(
        api.wait_for(DEADLINE, |a| events(a, "tor", "MissingReference") == 1)
            .await,
        "one Warning Event on the peer"
    );
    // The advertisement names an existing peer: valid.
    assert!(
        api.wait_for(DEADLINE, |a| {
            a.get(BGPADVERTISEMENTS, "", "adv")
                .and_then(|o| condition(&o, "Valid"))
                .is_some_and(|c| c["status"] == "True")
        })
        .await
    );

    // Unrelated changes re-check everything: no new write of the peer, no new Event.
    let peer_rv = api.get(BGPPEERS, "", "tor").unwrap()["metadata"]["resourceVersion"].clone();
    api.insert(
        BGPADVERTISEMENTS,
        herald("BGPAdvertisement", "other", json!({})),
    );
    assert!(
        api.wait_for(DEADLINE, |a| {
            a.get(BGPADVERTISEMENTS, "", "other")
                .and_then(|o| condition(&o, "Valid"))
                .is_some()
        })
        .await
    );
    assert_eq!(
        api.get(BGPPEERS, "", "tor").unwrap()["metadata"]["resourceVersion"],
        peer_rv,
        "an unchanged condition is not written again"
    );
    assert_eq!(events(&api, "tor", "MissingReference"), 1);

    // The profile appears: True, and one Normal Event.
    api.insert(BFDPROFILES, herald("BFDProfile", "fast", json!({})));
    assert!(
        api.wait_for(DEADLINE, |a| peer_valid(a)
            .is_some_and(|c| c["status"] == "True"))
            .await,
        "the peer did not turn valid: {:?}",
        api.get(BGPPEERS, "", "tor")
    );
    assert!(
        api.wait_for(DEADLINE, |a| events(a, "tor", "Valid") == 1)
            .await
    );
    assert!(
        api.wait_for(DEADLINE, |a| {
            a.get(BFDPROFILES, "", "fast")
                .and_then(|o| condition(&o, "Valid"))
                .is_some_and(|c| c["status"] == "True")
        })
        .await
    );
    c.stop().await;
}

#[tokio::test]
async fn of_two_overlapping_pools_the_later_is_not_ready_and_grants_nothing() {
    let api = FakeApi::new();
    api.insert(NAMESPACES, fakeapi::namespace("default"));
    // "z-early" is older although its name sorts last: creation time decides.
    let mut early = fakeapi::ip_pool("z-early", &["10.9.0.0/31"]);
    early["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    let mut late = fakeapi::ip_pool("a-late", &["10.9.0.0/30", "10.8.0.0/30"]);
    late["metadata"]["creationTimestamp"] = json!("2026-01-02T00:00:00Z");
    api.insert(IPPOOLS, early);
    api.insert(IPPOOLS, late);
    for i in 0..4 {
        api.insert(SERVICES, lb_service("default", &format!("s{i}"), 80));
    }
    // One asks for the later pool by name.
    api.insert(
        SERVICES,
        fakeapi::annotate(
            lb_service("default", "wants-late", 80),
            "herald.dev/pool",
            "a-late",
        ),
    );
    let c = start(&api);
    let ready = |a: &FakeApi, pool: &str| {
        a.get(IPPOOLS, "", pool)
            .and_then(|p| condition(&p, "Ready"))
    };
    assert!(
        api.wait_for(DEADLINE, |a| ready(a, "a-late")
            .is_some_and(|c| c["status"] == "False"))
            .await,
        "the later pool is not marked: {:?}",
        api.get(IPPOOLS, "", "a-late")
    );
    let cond = ready(&api, "a-late").unwrap();
    assert_eq!(cond["reason"], "Overlapping");
    assert!(
        cond["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.addresses[0]: overlaps IPPool \"z-early\""),
        "{cond}"
    );
    assert!(
        api.wait_for(DEADLINE, |a| ready(a, "z-early")
            .is_some_and(|c| c["status"] == "True"))
            .await
    );
    assert!(
        api.wait_for(DEADLINE, |a| events(a, "a-late", "Overlapping") == 1)
            .await,
        "one Warning Event on the later pool"
    );
    // The earlier pool's two addresses go to two Services; nothing comes from the later pool,
    // not even its own non-overlapping range, not even when asked for by name.
    assert!(
        api.wait_for(DEADLINE, |a| a.count(SERVICES, fakeapi::allocated) == 2)
            .await,
        "{:?}",
        api.all(SERVICES)
    );
    // Give the controller time to (wrongly) allocate more: wait for the failures' Events.
    assert!(
        api.wait_for(DEADLINE, |a| {
            a.count(EVENTS, |e| e["reason"] == "AllocationFailed") >= 3
        })
        .await,
        "the three Services left without address were not reported"
    );
    let mut seen = std::collections::BTreeSet::new();
    for svc in api.all(SERVICES) {
        let ips = ingress(&svc);
        let from = svc["metadata"]["annotations"]["herald.dev/allocated-from"].clone();
        assert_ne!(from, json!("a-late"), "{svc}");
        for ip in ips {
            assert!(ip == "10.9.0.0" || ip == "10.9.0.1", "{ip} from {from}");
            assert!(seen.insert(ip.clone()), "{ip} handed out twice");
        }
    }
    assert!(ingress(&api.get(SERVICES, "default", "wants-late").unwrap()).is_empty());

    // The earlier pool goes: the later one is ready and serves the waiting Services.
    api.delete(IPPOOLS, "", "z-early");
    assert!(
        api.wait_for(DEADLINE, |a| ready(a, "a-late")
            .is_some_and(|c| c["status"] == "True"))
            .await
    );
    assert!(
        api.wait_for(DEADLINE, |a| {
            a.get(SERVICES, "default", "wants-late")
                .is_some_and(|s| fakeapi::allocated(&s))
        })
        .await,
        "the Service asking for the later pool got nothing once it was valid"
    );
    c.stop().await;
}

/// A node's report: its session with `tor1` and, while it is up, `addresses` announced.
fn herald_node(name: &str, up: bool, addresses: &[String]) -> Value {
    let mut status = json!({
        "sessions": if up { "1/1" } else { "0/1" },
        "announcedCount": if up { addresses.len() } else { 0 },
        "bgp": [{"peer": "tor1", "address": "192.0.2.1",
                 "state": if up { "established" } else { "active" },
                 "since": "2026-12-03T12:00:00Z"}],
    });
    if up {
        status["announcements"] =
            json!([{"via": "BGP", "peers": ["tor1"], "addresses": addresses}]);
    }
    json!({"apiVersion": "herald.dev/v1alpha1", "kind": "HeraldNode",
           "metadata": {"name": name}, "spec": {}, "status": status})
}

#[tokio::test]
async fn the_nodes_reports_become_the_services_announced_condition_and_the_peers_sessions() {
    let api = FakeApi::new();
    api.insert(
        IPPOOLS,
        herald("IPPool", "a", json!({"addresses": ["198.51.100.0/24"]})),
    );
    api.insert(
        BGPPEERS,
        herald(
            "BGPPeer",
            "tor1",
            json!({"peerAddress": "192.0.2.1", "peerASN": 64513, "myASN": 64512}),
        ),
    );
    api.insert(
        NAMESPACES,
        json!({"apiVersion": "v1", "kind": "Namespace",
                                  "metadata": {"name": "default"}}),
    );
    api.insert(SERVICES, lb_service("default", "web", 80));
    let running = start(&api);

    let svc = |api: &FakeApi| api.get(SERVICES, "default", "web").unwrap();
    assert!(
        api.wait_for(DEADLINE, |a| !ingress(&svc(a)).is_empty())
            .await,
        "no address for web"
    );
    let addresses = ingress(&svc(&api));
    // Nobody reports yet: False, and why.
    assert!(
        api.wait_for(DEADLINE, |a| condition(&svc(a), "herald.dev/Announced")
            .is_some_and(|c| c["reason"] == "NoSpeaker"))
            .await,
        "{}",
        svc(&api)
    );

    // Two nodes announce it over BGP: True naming them, within 2 s.
    api.insert(HERALDNODES, herald_node("n1", true, &addresses));
    api.insert(HERALDNODES, herald_node("n2", true, &addresses));
    let t = std::time::Instant::now();
    assert!(
        api.wait_for(DEADLINE, |a| condition(&svc(a), "herald.dev/Announced")
            .is_some_and(
                |c| c["status"] == "True" && c["message"] == "announced by n1, n2 via BGP (tor1)"
            ))
        .await,
        "{}",
        svc(&api)
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    // The peer shows both nodes' sessions; the Valid condition is still there beside them.
    assert!(
        api.wait_for(DEADLINE, |a| {
            let p = a.get(BGPPEERS, "", "tor1").unwrap();
            p["status"]["established"] == "2/2" && condition(&p, "Valid").is_some()
        })
        .await,
        "{}",
        api.get(BGPPEERS, "", "tor1").unwrap()
    );
    // The address itself is still the controller's.
    assert_eq!(ingress(&svc(&api)), addresses);
    // At rest nothing more is written (three passes).
    let status_writes = |a: &FakeApi| {
        a.seen()
            .iter()
            .filter(|s| s.method == "PATCH" && s.path.ends_with("/status"))
            .map(|s| s.path.clone())
            .collect::<Vec<_>>()
    };
    let before = status_writes(&api);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let after = status_writes(&api);
    assert_eq!(
        after.len(),
        before.len(),
        "written at rest: {:?}",
        &after[before.len()..]
    );

    // Both sessions go down: False with the reason, within 2 s; the peer says 0/2.
    for n in ["n1", "n2"] {
        let down = herald_node(n, false, &addresses)["status"].clone();
        api.update(HERALDNODES, "", n, |o| o["status"] = down);
    }
    let t = std::time::Instant::now();
    assert!(
        api.wait_for(DEADLINE, |a| condition(&svc(a), "herald.dev/Announced")
            .is_some_and(
                |c| c["status"] == "False" && c["reason"] == "NoSessionUp"
            ))
        .await,
        "{}",
        svc(&api)
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        api.wait_for(DEADLINE, |a| a.get(BGPPEERS, "", "tor1").unwrap()["status"]
            ["established"]
            == "0/2")
            .await
    );
    running.stop().await;
}

//! Cluster mode's kube glue (`cluster::run`: watches, snapshots, engine, Events) against a
//! mocked API server. The BGP neighbour is a passive Herald session on loopback, so routes
//! are checked where they arrive. One scenario per test.

mod apiserver;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use apiserver::{ApiServer, Write, eventually, list};
use herald_speaker::admin::Shared;
use herald_speaker::bgp::driver::{PeerConfig, PeerHandle};
use herald_speaker::bgp::fsm::{SessionConfig, State};
use herald_speaker::bgp::listener::Listener;
use herald_speaker::cluster::{self, ClusterError, Options};
use herald_speaker::status::StatusReport;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const DEADLINE: Duration = Duration::from_secs(20);
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const NODE: &str = "n1";
const SECRETS: &str = "/api/v1/namespaces/herald-system/secrets";
const SERVICES: &str = "/api/v1/services";
const NODES: &str = "/api/v1/nodes";
const BGP_ADVERTISEMENTS: &str = "/apis/herald.dev/v1alpha1/bgpadvertisements";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

/// A BGP router: a passive session on loopback (AS 64513) expecting Herald (AS 64512).
struct Router {
    handle: PeerHandle,
    _listener: Listener,
    port: u16,
}

impl Router {
    fn start() -> Router {
        let mut cfg = SessionConfig::new(64513, 64512, Ipv4Addr::new(192, 0, 2, 254));
        cfg.passive = true;
        let handle = PeerHandle::spawn(PeerConfig::new(cfg, LOOPBACK)).unwrap();
        handle.set_routes(Default::default());
        let listener = Listener::bind(SocketAddr::new(LOOPBACK, 0), &[&handle]).unwrap();
        let port = listener.local_addr().port();
        Router {
            handle,
            _listener: listener,
            port,
        }
    }

    async fn wait_prefixes(&self, n: usize) {
        eventually(&format!("{n} prefixes at the router"), DEADLINE, || async {
            (self.handle.status().prefixes_received == n).then_some(())
        })
        .await
    }
}

fn pool() -> Value {
    json!({"apiVersion": "herald.dev/v1alpha1", "kind": "IPPool",
           "metadata": {"name": "a", "resourceVersion": "1"},
           "spec": {"addresses": ["10.0.0.0/24"]}})
}

fn peer(name: &str, port: u16, secret: Option<&str>) -> Value {
    let mut p = json!({"apiVersion": "herald.dev/v1alpha1", "kind": "BGPPeer",
           "metadata": {"name": name, "resourceVersion": "1"},
           "spec": {"peerAddress": "127.0.0.1", "peerPort": port, "peerASN": 64513,
                    "myASN": 64512, "routerID": "192.0.2.1", "connectTime": "1s"}});
    if let Some(s) = secret {
        p["spec"]["passwordSecret"] = json!({"name": s});
    }
    p
}

fn advertisement(communities: &[&str], rv: &str) -> Value {
    json!({"apiVersion": "herald.dev/v1alpha1", "kind": "BGPAdvertisement",
           "metadata": {"name": "adv", "resourceVersion": rv},
           "spec": {"ipPools": ["a"], "communities": communities}})
}

fn node(ready: bool, rv: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": NODE, "resourceVersion": rv},
           "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

fn service(ingress: &[&str], rv: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": "default", "uid": "uid-web",
                        "resourceVersion": rv,
                        "annotations": {"herald.dev/allocated-from": "a"}},
           "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
           "status": {"loadBalancer": {"ingress":
               ingress.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>()}}})
}

fn secret(name: &str, password: &str) -> Value {
    use std::fmt::Write as _;
    // base64 by hand: the test crate has no encoder and the values are short.
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in password.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                let _ = b64.write_char(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "namespace": "herald-system", "resourceVersion": "2"},
           "data": {"password": b64}})
}

/// Every list the speaker reads, empty unless given.
fn lists(objects: Vec<(&str, Vec<Value>)>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (path, kind, version) in [
        (SERVICES, "ServiceList", "v1"),
        (
            "/apis/discovery.k8s.io/v1/endpointslices",
            "EndpointSliceList",
            "discovery.k8s.io/v1",
        ),
        (NODES, "NodeList", "v1"),
        (
            "/apis/herald.dev/v1alpha1/ippools",
            "IPPoolList",
            "herald.dev/v1alpha1",
        ),
        (
            "/apis/herald.dev/v1alpha1/bgppeers",
            "BGPPeerList",
            "herald.dev/v1alpha1",
        ),
        (
            BGP_ADVERTISEMENTS,
            "BGPAdvertisementList",
            "herald.dev/v1alpha1",
        ),
        (
            "/apis/herald.dev/v1alpha1/l2advertisements",
            "L2AdvertisementList",
            "herald.dev/v1alpha1",
        ),
        (
            "/apis/herald.dev/v1alpha1/bfdprofiles",
            "BFDProfileList",
            "herald.dev/v1alpha1",
        ),
        (SECRETS, "SecretList", "v1"),
    ] {
        let items = objects
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, items)| items.clone())
            .unwrap_or_default();
        out.insert(path.to_owned(), list(kind, version, items));
    }
    out
}

/// One BGP-announced Service on a Ready node, announced to `peers`.
fn announced_web(peers: Vec<Value>) -> Vec<(&'static str, Vec<Value>)> {
    vec![
        ("/apis/herald.dev/v1alpha1/ippools", vec![pool()]),
        ("/apis/herald.dev/v1alpha1/bgppeers", peers),
        (BGP_ADVERTISEMENTS, vec![advertisement(&[], "1")]),
        (NODES, vec![node(true, "1")]),
        (SERVICES, vec![service(&["10.0.0.5"], "1")]),
    ]
}

/// The speaker under test.
struct Speaker {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), ClusterError>>,
}

impl Speaker {
    fn start(client: kube::Client) -> Speaker {
        let shared = Arc::new(Shared::default());
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(cluster::run(
            client,
            Options {
                node_name: NODE.to_owned(),
                lb_class: herald_ipam::convert::LbClass::default(),
                secrets_namespace: "herald-system".to_owned(),
                bgp_listen_addr: "127.0.0.1:0".parse().unwrap(),
                gossip: None,
                dataplane: Default::default(),
                on_exit: Default::default(),
            },
            shared.clone(),
            stop_rx,
        ));
        Speaker { shared, stop, task }
    }

    fn status(&self) -> StatusReport {
        self.shared.status.read().unwrap().clone()
    }

    fn routes(&self) -> Vec<(String, String)> {
        self.status()
            .desired
            .routes
            .iter()
            .map(|r| (r.peer.clone(), r.prefix.clone()))
            .collect()
    }

    async fn wait_routes(&self, want: &[(&str, &str)]) {
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(p, r)| (p.to_string(), r.to_string()))
            .collect();
        eventually(&format!("desired routes {want:?}"), DEADLINE, || async {
            (self.routes() == want).then_some(())
        })
        .await
    }

    /// Stops the speaker and waits for `run` to return.
    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the speaker did not stop")
            .unwrap()
            .unwrap();
    }
}

/// The next Event the speaker created: (reason, type, regarding name, note).
async fn next_event(server: &mut ApiServer, path: &str) -> (String, String, String, String) {
    let Write {
        method,
        path: got,
        body,
    } = server.next_write(DEADLINE).await;
    assert_eq!((method.as_str(), got.as_str()), ("POST", path), "{body}");
    assert_eq!(body["reportingController"], "herald.dev/speaker");
    assert_eq!(body["reportingInstance"], NODE);
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        s(&body["reason"]),
        s(&body["type"]),
        s(&body["regarding"]["name"]),
        s(&body["note"]),
    )
}

fn modified(object: Value) -> Value {
    json!({"type": "MODIFIED", "object": object})
}

#[tokio::test]
async fn a_service_with_an_ingress_address_and_a_bgp_peer_is_routed_to_the_peer_and_announced_by_one_event()
 {
    let router = Router::start();
    let (client, mut server) = ApiServer::start(lists(announced_web(vec![peer(
        "router",
        router.port,
        None,
    )])));
    let speaker = Speaker::start(client);

    speaker.wait_routes(&[("router", "10.0.0.5/32")]).await;
    assert!(speaker.shared.ready.load(Ordering::Acquire));
    router.wait_prefixes(1).await;
    let status = speaker.status();
    assert_eq!(status.services.len(), 1);
    assert_eq!(status.services[0].addresses, ["10.0.0.5"]);
    assert_eq!(status.services[0].pools, ["a"]);

    let event = next_event(&mut server, EVENTS).await;
    assert_eq!(
        event,
        (
            "Announced".to_owned(),
            "Normal".to_owned(),
            "web".to_owned(),
            "announced by node n1 via BGP to 1 peer".to_owned()
        )
    );
    eventually("the announcement in /status", DEADLINE, || async {
        let a = speaker.status().announcements;
        (a.len() == 1 && a[0].announcement == "announced by node n1 via BGP to 1 peer")
            .then_some(())
    })
    .await;

    speaker.stop().await;
    // A planned restart: the connection closes (without a Cease, the router keeps the
    // routes if it negotiated graceful restart) rather than the router waiting for the hold
    // time.
    eventually("the router's session to end", DEADLINE, || async {
        (router.handle.status().state != State::Established).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_drain_annotation_on_the_node_drains_it_and_removing_it_serves_again() {
    use herald_speaker::drain::Phase;
    let router = Router::start();
    let (client, server) = ApiServer::start(lists(announced_web(vec![peer(
        "router",
        router.port,
        None,
    )])));
    let speaker = Speaker::start(client);
    router.wait_prefixes(1).await;
    assert_eq!(speaker.status().drain, Phase::Serving);

    let mut annotated = node(true, "2");
    annotated["metadata"]["annotations"] = json!({"herald.dev/drain": "true"});
    server.push(NODES, vec![modified(annotated)]);
    eventually("the node draining", DEADLINE, || async {
        (speaker.status().drain == Phase::Draining).then_some(())
    })
    .await;
    // Draining keeps the routes (marked) until the wait is over.
    assert_eq!(router.handle.status().prefixes_received, 1);

    server.push(NODES, vec![modified(node(true, "3"))]);
    eventually("the node serving again", DEADLINE, || async {
        (speaker.status().drain == Phase::Serving).then_some(())
    })
    .await;
    router.wait_prefixes(1).await;
    speaker.stop().await;
}

#[tokio::test]
async fn each_announcement_change_emits_exactly_one_event_on_the_service() {
    let router = Router::start();
    let (client, mut server) = ApiServer::start(lists(announced_web(vec![peer(
        "router",
        router.port,
        None,
    )])));
    let speaker = Speaker::start(client);
    router.wait_prefixes(1).await;
    assert_eq!(next_event(&mut server, EVENTS).await.0, "Announced");

    // The node goes NotReady: withdrawn, a Warning naming why.
    server.push(NODES, vec![modified(node(false, "2"))]);
    router.wait_prefixes(0).await;
    let (reason, type_, name, note) = next_event(&mut server, EVENTS).await;
    assert_eq!(
        (
            reason.as_str(),
            type_.as_str(),
            name.as_str(),
            note.as_str()
        ),
        (
            "Withdrawn",
            "Warning",
            "web",
            "not announced by node n1: node excluded (NotReady)"
        )
    );
    // Other changes while not announced make no Event: the next one is the re-announcement.
    server.push(SERVICES, vec![modified(service(&["10.0.0.5"], "2"))]);
    server.push(NODES, vec![modified(node(true, "3"))]);
    router.wait_prefixes(1).await;
    assert_eq!(
        next_event(&mut server, EVENTS).await.3,
        "announced by node n1 via BGP to 1 peer"
    );
    // The controller takes the address away.
    server.push(SERVICES, vec![modified(service(&[], "3"))]);
    router.wait_prefixes(0).await;
    let (reason, type_, _, note) = next_event(&mut server, EVENTS).await;
    assert_eq!(
        (reason.as_str(), type_.as_str(), note.as_str()),
        (
            "Withdrawn",
            "Normal",
            "not announced by node n1: the Service has no address"
        )
    );
    speaker.stop().await;
    assert!(
        server.writes.try_recv().is_err(),
        "no Event beyond one per change"
    );
}

#[tokio::test]
async fn a_missing_password_secret_fails_that_peer_with_an_error_naming_it_until_the_secret_appears()
 {
    let router = Router::start();
    // router-a points at a closed port: only its presence in the configuration matters.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let (client, mut server) = ApiServer::start(lists(announced_web(vec![
        peer("router-a", closed_port, Some("bgp-auth")),
        peer("router-b", router.port, None),
    ])));
    let speaker = Speaker::start(client);

    speaker.wait_routes(&[("router-b", "10.0.0.5/32")]).await;
    let message = "BGPPeer \"router-a\": passwordSecret herald-system/bgp-auth: Secret not found";
    assert_eq!(speaker.status().config.left_out, [message]);
    assert_eq!(
        speaker.status().config.last_error,
        None,
        "only that peer fails"
    );
    let event = next_event(
        &mut server,
        "/apis/events.k8s.io/v1/namespaces/default/events",
    )
    .await;
    assert_eq!(
        event,
        (
            "PeerNotStarted".to_owned(),
            "Warning".to_owned(),
            "router-a".to_owned(),
            message.to_owned()
        )
    );
    // The other peer announces regardless.
    router.wait_prefixes(1).await;

    server.push(
        SECRETS,
        vec![json!({"type": "ADDED", "object": secret("bgp-auth", "s3cret")})],
    );
    speaker
        .wait_routes(&[("router-a", "10.0.0.5/32"), ("router-b", "10.0.0.5/32")])
        .await;
    assert!(speaker.status().config.left_out.is_empty());
    eventually("a session for router-a", DEADLINE, || async {
        speaker
            .status()
            .bgp
            .iter()
            .any(|b| b.peer == "router-a")
            .then_some(())
    })
    .await;
    speaker.stop().await;
}

#[tokio::test]
async fn readiness_waits_for_every_initial_list() {
    let mut held = lists(announced_web(vec![]));
    held.remove(SECRETS);
    let (client, mut server) = ApiServer::start(held);
    let speaker = Speaker::start(client);

    // Every other kind is listed and watched; the Secrets list is still unanswered.
    let mut watched = std::collections::BTreeSet::new();
    let mut secrets_listed = false;
    while watched.len() < 8 || !secrets_listed {
        let read = tokio::time::timeout(DEADLINE, server.reads.recv())
            .await
            .expect("the speaker stopped reading")
            .unwrap();
        if let Some(path) = read.strip_prefix("WATCH ") {
            watched.insert(path.to_owned());
        }
        secrets_listed |= read == format!("LIST {SECRETS}");
    }
    assert!(!watched.contains(SECRETS));
    assert!(!speaker.shared.ready.load(Ordering::Acquire));
    assert_eq!(speaker.status().config.generation, 0, "nothing applied yet");

    server.list(SECRETS, list("SecretList", "v1", vec![]));
    eventually("ready", DEADLINE, || async {
        speaker.shared.ready.load(Ordering::Acquire).then_some(())
    })
    .await;
    assert_eq!(speaker.status().config.generation, 1);
    speaker.stop().await;
}

#[tokio::test]
async fn an_advertisement_edited_into_an_invalid_one_keeps_its_last_valid_version_and_says_so_once()
{
    let router = Router::start();
    let (client, mut server) = ApiServer::start(lists(announced_web(vec![peer(
        "router",
        router.port,
        None,
    )])));
    let speaker = Speaker::start(client);
    router.wait_prefixes(1).await;
    assert_eq!(next_event(&mut server, EVENTS).await.0, "Announced");
    let generation = speaker.status().config.generation;

    server.push(
        BGP_ADVERTISEMENTS,
        vec![modified(advertisement(&["not-a-community"], "2"))],
    );
    let (reason, type_, name, note) = next_event(&mut server, EVENTS).await;
    assert_eq!(
        (reason.as_str(), type_.as_str(), name.as_str()),
        ("NotApplied", "Warning", "adv")
    );
    assert!(
        note.starts_with("BGPAdvertisement \"adv\": spec.communities[0]")
            && note.ends_with("(its last valid version stays in force)"),
        "{note}"
    );
    let status = speaker.status();
    assert_eq!(status.config.left_out, [note]);
    assert_eq!(status.config.last_error, None, "nothing is refused whole");
    assert!(
        status.config.generation > generation,
        "the snapshot applied"
    );
    // The last valid version keeps the route.
    assert_eq!(
        speaker.routes(),
        [("router".to_owned(), "10.0.0.5/32".to_owned())]
    );
    assert_eq!(router.handle.status().prefixes_received, 1);
    let metrics = speaker.shared.metrics.encode();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("herald_config_objects_left_out ") && l.ends_with(" 1")),
        "{metrics}"
    );

    // Other changes while it stays invalid publish nothing more about it.
    let generation = speaker.status().config.generation;
    server.push(NODES, vec![modified(node(true, "2"))]);
    eventually("the next snapshot", DEADLINE, || async {
        (speaker.status().config.generation > generation).then_some(())
    })
    .await;

    // Fixed: applied, nothing left out.
    server.push(
        BGP_ADVERTISEMENTS,
        vec![modified(advertisement(&["65000:1"], "3"))],
    );
    eventually("the fix applied", DEADLINE, || async {
        speaker.status().config.left_out.is_empty().then_some(())
    })
    .await;
    speaker.stop().await;
    assert!(
        server.writes.try_recv().is_err(),
        "one Event for the invalid advertisement, not one per snapshot"
    );
}

#[tokio::test]
async fn a_peer_naming_a_missing_bfd_profile_is_left_out_alone_until_the_profile_appears() {
    let router = Router::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut with_bfd = peer("router-a", closed_port, None);
    with_bfd["spec"]["bfdProfile"] = json!("fast");
    let (client, mut server) = ApiServer::start(lists(announced_web(vec![
        with_bfd,
        peer("router-b", router.port, None),
    ])));
    let speaker = Speaker::start(client);

    // The other peer announces; the node is ready.
    speaker.wait_routes(&[("router-b", "10.0.0.5/32")]).await;
    router.wait_prefixes(1).await;
    assert!(speaker.shared.ready.load(Ordering::Acquire));
    let message = "BGPPeer \"router-a\": spec.bfdProfile: no BFDProfile named \"fast\"";
    assert_eq!(speaker.status().config.left_out, [message]);
    let mut events = [
        next_event(&mut server, EVENTS).await,
        next_event(&mut server, EVENTS).await,
    ];
    events.sort();
    assert_eq!(
        events[1],
        (
            "PeerNotStarted".to_owned(),
            "Warning".to_owned(),
            "router-a".to_owned(),
            message.to_owned()
        )
    );
    assert_eq!(events[0].0, "Announced");
    assert!(
        !speaker.status().bgp.iter().any(|b| b.peer == "router-a"),
        "no session for the peer left out"
    );

    server.push(
        "/apis/herald.dev/v1alpha1/bfdprofiles",
        vec![json!({"type": "ADDED", "object": {
            "apiVersion": "herald.dev/v1alpha1", "kind": "BFDProfile",
            "metadata": {"name": "fast", "resourceVersion": "5"}, "spec": {}}})],
    );
    eventually("a session for router-a", DEADLINE, || async {
        let s = speaker.status();
        (s.config.left_out.is_empty() && s.bgp.iter().any(|b| b.peer == "router-a")).then_some(())
    })
    .await;
    speaker.stop().await;
}

#[tokio::test(start_paused = true)]
async fn events_beyond_a_burst_are_paced_and_a_full_queue_drops_new_ones() {
    use herald_speaker::cluster::events::{BURST, PACE, Publisher, QUEUE_LIMIT};
    use k8s_openapi::api::core::v1::ObjectReference;

    let (client, mut server) = ApiServer::start(BTreeMap::new());
    let publisher = Publisher::spawn(client, NODE);
    let regarding = ObjectReference {
        kind: Some("Service".to_owned()),
        name: Some("web".to_owned()),
        namespace: Some("default".to_owned()),
        ..Default::default()
    };
    let start = tokio::time::Instant::now();
    // Nothing is sent before this loop yields: the queue fills, then refuses.
    let queued = (0..QUEUE_LIMIT + 10)
        .filter(|i| publisher.publish(regarding.clone(), "Announced", false, i.to_string()))
        .count();
    assert_eq!(queued, QUEUE_LIMIT);
    for i in 0..BURST as usize {
        let (_, _, _, note) = next_event(&mut server, EVENTS).await;
        assert_eq!(note, i.to_string(), "in order");
    }
    assert!(start.elapsed() < PACE, "the burst goes out at once");
    let (_, _, _, note) = next_event(&mut server, EVENTS).await;
    assert_eq!(note, BURST.to_string());
    assert!(start.elapsed() >= PACE, "then one per {PACE:?}");
    let (_, _, _, _) = next_event(&mut server, EVENTS).await;
    assert!(start.elapsed() >= 2 * PACE);
}

#[tokio::test]
async fn an_invalid_advertisement_at_start_is_left_out_and_the_node_is_ready() {
    let router = Router::start();
    let mut objects = announced_web(vec![peer("router", router.port, None)]);
    objects[2] = (
        BGP_ADVERTISEMENTS,
        vec![advertisement(&["not-a-community"], "1")],
    );
    let (client, server) = ApiServer::start(lists(objects));
    let speaker = Speaker::start(client);
    eventually("ready", DEADLINE, || async {
        speaker.shared.ready.load(Ordering::Acquire).then_some(())
    })
    .await;
    let status = speaker.status();
    assert_eq!(status.config.last_error, None);
    assert_eq!(status.config.left_out.len(), 1);
    let left = &status.config.left_out[0];
    assert!(
        left.starts_with("BGPAdvertisement \"adv\": spec.communities[0]")
            && !left.contains("stays in force"),
        "never valid, so left out entirely: {left}"
    );
    assert!(speaker.routes().is_empty());

    server.push(BGP_ADVERTISEMENTS, vec![modified(advertisement(&[], "2"))]);
    speaker.wait_routes(&[("router", "10.0.0.5/32")]).await;
    assert!(speaker.status().config.left_out.is_empty());
    speaker.stop().await;
}

const HERALD_NODE: &str = "/apis/herald.dev/v1alpha1/heraldnodes/n1";

/// The next write of this node's `HeraldNode`: (when, path, body).
async fn next_node_write(server: &mut ApiServer) -> (tokio::time::Instant, String, Value) {
    let (at, w) = tokio::time::timeout(DEADLINE, server.node_writes.recv())
        .await
        .expect("no HeraldNode write within the deadline")
        .expect("server gone");
    assert_eq!(w.method, "PATCH", "{}", w.body);
    (at, w.path, w.body)
}

#[tokio::test]
async fn the_node_object_is_owned_by_the_node_and_its_status_follows_sessions_at_most_once_a_second()
 {
    let router = Router::start();
    let mut objects = announced_web(vec![peer("router", router.port, None)]);
    let mut n = node(true, "1");
    n["metadata"]["uid"] = json!("uid-n1");
    objects.retain(|(p, _)| *p != NODES);
    objects.push((NODES, vec![n]));
    let (client, mut server) = ApiServer::start(lists(objects));
    let speaker = Speaker::start(client);

    // First the object, owned by the Node (so the API server deletes it with the Node).
    let (_, path, body) = next_node_write(&mut server).await;
    assert_eq!(path, HERALD_NODE);
    assert_eq!(body["kind"], "HeraldNode");
    let owner = &body["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["kind"], &owner["name"], &owner["uid"]),
        (&json!("Node"), &json!("n1"), &json!("uid-n1")),
        "{body}"
    );
    assert!(body.get("status").is_none(), "{body}");

    // Then its status, until it says the session is up and the address announced over it.
    let mut last = None;
    let status = loop {
        let (at, path, body) = next_node_write(&mut server).await;
        assert_eq!(path, format!("{HERALD_NODE}/status"));
        if let Some(prev) = last {
            let gap: Duration = at - prev;
            assert!(
                gap >= Duration::from_millis(900),
                "two writes {gap:?} apart"
            );
        }
        last = Some(at);
        let s = body["status"].clone();
        // Settled: the session up, the address announced and the route sent.
        if s["sessions"] == "1/1" && s["announcedCount"] == 1 && s["bgp"][0]["prefixesSent"] == 1 {
            break s;
        }
    };
    assert_eq!(
        status["announcements"],
        json!([{"via": "BGP", "peers": ["router"], "addresses": ["10.0.0.5"]}]),
        "{status}"
    );
    assert_eq!(status["bgp"][0]["state"], "established", "{status}");
    assert!(status["bgp"][0]["since"].is_string(), "{status}");

    // At rest: nothing more is written (3 ticks of the writer).
    let quiet = tokio::time::timeout(Duration::from_millis(3200), server.node_writes.recv()).await;
    assert!(quiet.is_err(), "a write at rest: {quiet:?}\nafter {status}");

    // The session goes down: one write says so, and the address is no longer announced.
    drop(router);
    let status = loop {
        let (_, _, body) = next_node_write(&mut server).await;
        let s = body["status"].clone();
        if s["sessions"] == "0/1" {
            break s;
        }
    };
    assert_eq!(status["announcedCount"], 0, "{status}");
    assert!(status.get("announcements").is_none(), "{status}");
    speaker.stop().await;
}

#[tokio::test]
async fn a_service_deleted_while_its_watch_was_expired_is_withdrawn_after_the_relist() {
    let router = Router::start();
    let (client, server) = ApiServer::start(lists(announced_web(vec![peer(
        "router",
        router.port,
        None,
    )])));
    let speaker = Speaker::start(client);
    speaker.wait_routes(&[("router", "10.0.0.5/32")]).await;
    router.wait_prefixes(1).await;

    // The Service is deleted while the watch is down; the server then answers the watch
    // with `410 Gone` (its resourceVersion is too old), as a real one does after a long
    // disconnect. The DELETED event is never seen: only the relist says the Service is gone.
    server.list(SERVICES, list("ServiceList", "v1", vec![]));
    server.push(
        SERVICES,
        vec![json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired",
            "code": 410, "message": "too old resource version: 1 (5)"}})],
    );
    speaker.wait_routes(&[]).await;
    router.wait_prefixes(0).await;
    assert!(speaker.status().services.is_empty());
    speaker.stop().await;
}

//! The images (`scripts/images.sh`, what `make images` runs, here from the debug binaries)
//! run with podman the way the chart runs the pods: the user, capabilities, read-only root,
//! seccomp profile, `allowPrivilegeEscalation`, volumes and arguments come from `helm
//! template` output, not from this file. `hostNetwork` is the container joining a lab
//! namespace that stands for the node.
//!
//! What a kubelet would add and the test adds instead: the API server, as a kubeconfig
//! (`KUBECONFIG`) for the stateful fake one (`controller/tests/fakeapi`) served on the node
//! namespace's loopback, where a pod has the in-cluster service account; the values of the
//! `fieldRef` environment variables; the gossip key Secret as a file. And the hard `nofile`
//! / `nproc` limits this machine allows (podman's defaults exceed them).
//!
//! The speaker image peers with BIRD, answers ARP for a layer-2 address, attaches the XDP
//! balancer and TC decapsulation, binds the VIPs it serves to `lo` (which sets two ARP
//! sysctls) and answers a ping to a VIP that arrives encapsulated in IPIP, as from a
//! balancer. The controller image, without a reachable API server, keeps running, serves
//! `/healthz` and says what it cannot reach.

#[allow(unused_imports)]
#[path = "../../controller/tests/fakeapi/mod.rs"]
mod fakeapi;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use aya::programs::{SchedClassifier, TcAttachType};
use fakeapi::{
    BGPADVERTISEMENTS, BGPPEERS, ENDPOINTSLICES, FakeApi, IPPOOLS, L2ADVERTISEMENTS, NAMESPACES,
    NODES, SERVICES,
};
use herald_tests::bird::Bird;
use herald_tests::container::{Container, PodRun, build_images, render_chart};
use herald_tests::{BpfFs, Netns, require_privileged, veth_pair};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(60);
const NODE: &str = "img-node";
const BGP_VIP: &str = "198.51.100.10";
const L2_VIP: &str = "10.66.0.100";

fn cluster() -> FakeApi {
    let api = FakeApi::new();
    api.insert(
        NAMESPACES,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    );
    api.insert(
        NODES,
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
               "status": {"conditions": [{"type": "Ready", "status": "True"}],
                          "addresses": [{"type": "InternalIP", "address": "10.66.0.1"}]}}),
    );
    for (pool, cidr) in [("routed", "198.51.100.0/24"), ("lan", "10.66.0.100/32")] {
        api.insert(
            IPPOOLS,
            json!({"apiVersion": "herald.dev/v1alpha1", "kind": "IPPool",
                   "metadata": {"name": pool}, "spec": {"addresses": [cidr]}}),
        );
    }
    api.insert(
        BGPPEERS,
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "BGPPeer",
               "metadata": {"name": "rtr"},
               "spec": {"peerAddress": "10.66.0.2", "peerASN": 64513, "myASN": 64512,
                        "connectTime": "1s"}}),
    );
    api.insert(
        BGPADVERTISEMENTS,
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "BGPAdvertisement",
               "metadata": {"name": "routed"}, "spec": {"ipPools": ["routed"]}}),
    );
    api.insert(
        L2ADVERTISEMENTS,
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "L2Advertisement",
               "metadata": {"name": "lan"}, "spec": {"ipPools": ["lan"]}}),
    );
    for (name, pool, ip, pod_ip) in [
        ("web", "routed", BGP_VIP, "10.244.0.10"),
        ("dns", "lan", L2_VIP, "10.244.0.11"),
    ] {
        api.insert(
            SERVICES,
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                                "annotations": {"herald.dev/allocated-from": pool}},
                   "spec": {"type": "LoadBalancer",
                            "ports": [{"port": 80, "protocol": "TCP"}],
                            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"},
                   "status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}),
        );
        api.insert(
            ENDPOINTSLICES,
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": {"name": format!("{name}-abcde"), "namespace": "shop",
                                "labels": {"kubernetes.io/service-name": name}},
                   "addressType": "IPv4",
                   "endpoints": [{"addresses": [pod_ip],
                                  "conditions": {"ready": true, "serving": true,
                                                 "terminating": false},
                                  "nodeName": NODE}],
                   "ports": [{"name": "", "port": 8080, "protocol": "TCP"}]}),
        );
    }
    api
}

/// Serves `api` over HTTP on a listener bound inside `ns`'s loopback.
fn serve(api: FakeApi, ns: &Netns, rt: &tokio::runtime::Runtime) -> SocketAddr {
    let listener = ns.run_in(|| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"));
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("local addr");
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let api = api.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_default();
                let req = http::Request::from_parts(parts, kube::client::Body::from(bytes));
                api.handle(req).await.map(axum::body::Body::new)
            }
        });
        axum::serve(listener, app).await.expect("serve");
    });
    addr
}

/// A kubeconfig for `server`, readable by any user (the controller runs as 65532).
fn kubeconfig(dir: &Path, server: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: '{server}'}}}}]
users: [{{name: u, user: {{}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u, namespace: default}}}}]
current-context: c
"
        ),
    )
    .expect("kubeconfig");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    path
}

/// Waits for `what`, failing with the container's log if it stopped or the deadline passed
/// (the error the pod would log is in it).
fn wait_for(container: &Container, what: &str, mut probe: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + DEADLINE;
    let mut last = String::new();
    while Instant::now() < deadline {
        if !container.running() {
            panic!(
                "the container stopped while waiting for {what}; its log:\n{}",
                container.logs()
            );
        }
        match probe() {
            Ok(()) => return,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "timed out after {DEADLINE:?} waiting for {what}; last seen: {last}\ncontainer log:\n{}",
        container.logs()
    );
}

/// From this thread's namespace: sends an ICMP echo request from `src` to `vip`, encapsulated
/// in IPIP to `node` (as a balancer would), and waits up to a second for the echo reply from
/// `vip` that the node sends back directly once it has decapsulated the request.
fn echo_through_ipip(src: &str, node: &str, vip: &str) -> Result<(), String> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::io::Read;
    let (src, node, vip): (std::net::Ipv4Addr, std::net::Ipv4Addr, std::net::Ipv4Addr) = (
        src.parse().unwrap(),
        node.parse().unwrap(),
        vip.parse().unwrap(),
    );
    let id = (std::process::id() & 0xffff) as u16;
    let mut inner = Vec::new();
    etherparse::PacketBuilder::ipv4(src.octets(), vip.octets(), 64)
        .icmpv4_echo_request(id, 1)
        .write(&mut inner, b"herald")
        .map_err(|e| e.to_string())?;
    let replies = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
        .map_err(|e| format!("raw ICMP socket: {e}"))?;
    replies
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    // The kernel writes the outer header; protocol 4 is IP-in-IP.
    let ipip = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(4)))
        .map_err(|e| format!("raw IPIP socket: {e}"))?;
    ipip.send_to(&inner, &std::net::SocketAddr::new(node.into(), 0).into())
        .map_err(|e| format!("sending IPIP: {e}"))?;
    let until = Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 1500];
    while Instant::now() < until {
        let Ok(n) = (&replies).read(&mut buf) else {
            continue;
        };
        let Ok((ip, rest)) = etherparse::Ipv4Header::from_slice(&buf[..n]) else {
            continue;
        };
        let is_reply = rest.len() >= 8 && rest[0] == 0 && rest[4..6] == id.to_be_bytes();
        if ip.source == vip.octets() && is_reply {
            return Ok(());
        }
    }
    Err(format!("no echo reply from {vip} within 1 s"))
}

#[test]
fn the_speaker_image_peers_answers_arp_attaches_xdp_and_decapsulates_with_the_charts_privileges() {
    require_privileged!();
    build_images();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let node = Netns::new("img-n");
    let router = Netns::new("img-r");
    let (uplink, router_if) = veth_pair(&node, &["10.66.0.1/24"], &router, &["10.66.0.2/24"]);
    let bird = Bird::start(
        &router,
        "router id 10.66.0.2;
protocol device { }
protocol bgp node {
  local 10.66.0.2 as 64513; neighbor 10.66.0.1 as 64512; passive on;
  ipv4 { import all; export none; };
}
",
    );
    let docs = render_chart(&[
        &format!("speaker.xdp.interfaces={{{uplink}}}"),
        "speaker.decap=true",
        "speaker.gossip.keySecret=herald-gossip",
    ]);
    let pod = PodRun::from_chart(&docs, "DaemonSet", "herald-speaker", "speaker");

    let addr = serve(cluster(), &node, &rt);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = kubeconfig(dir.path(), &format!("http://{addr}"));
    let gossip = dir.path().join("gossip");
    std::fs::create_dir(&gossip).expect("gossip dir");
    std::fs::write(gossip.join("key"), "11".repeat(32)).expect("gossip key");
    let bpffs = BpfFs::mount();
    let volumes: Vec<(&str, &Path)> = pod
        .mounts
        .iter()
        .map(|(path, vol, _)| {
            let host: &Path = if vol["name"] == "bpffs" {
                bpffs.path()
            } else if vol["name"] == "gossip-key" {
                &gossip
            } else if let Some(p) = vol["hostPath"]["path"].as_str() {
                // Other host paths are the node's own (e.g. /proc/sys/net, which shows the
                // namespace of the process that reads it: the node namespace).
                Path::new(p)
            } else {
                panic!("the test does not know the speaker's volume {vol}")
            };
            (path.as_str(), host)
        })
        .collect();
    let speaker = Container::run(
        "speaker",
        &node,
        &pod,
        &[
            ("NODE_NAME", NODE),
            ("POD_NAMESPACE", "herald-system"),
            ("HOST_IP", "10.66.0.1"),
        ],
        &volumes,
        &[
            "--env=KUBECONFIG=/etc/herald-test/kubeconfig".to_owned(),
            format!(
                "--volume={}:/etc/herald-test/kubeconfig:ro",
                config.display()
            ),
        ],
    );

    wait_for(&speaker, "the BGP VIP at BIRD", || {
        let r = bird.routes("node");
        if r.contains(&format!("{BGP_VIP}/32")) {
            Ok(())
        } else {
            Err(r)
        }
    });
    let node_mac = node.exec("cat", &[&format!("/sys/class/net/{uplink}/address")]);
    let node_mac = node_mac.trim().to_ascii_lowercase();
    wait_for(&speaker, "an ARP reply for the layer-2 VIP", || {
        let out = router.try_exec("arping", &["-c", "1", "-w", "1", "-I", &router_if, L2_VIP]);
        let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        if text.contains(&node_mac) {
            Ok(())
        } else {
            Err(text)
        }
    });
    wait_for(&speaker, "XDP on the uplink", || {
        let link = node.ip(&["-d", "link", "show", &uplink]);
        if link.contains("xdp") {
            Ok(())
        } else {
            Err(link)
        }
    });
    wait_for(&speaker, "TC decapsulation on the uplink", || {
        // Attached with tcx (Linux 6.6+), which `tc filter show` does not list.
        let attached: Vec<String> = node.run_in(|| {
            SchedClassifier::query_tcx(&uplink, TcAttachType::Ingress)
                .map(|(_, progs)| {
                    progs
                        .iter()
                        .filter_map(|p| p.name_as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        });
        if attached.iter().any(|p| p == "herald_decap") {
            Ok(())
        } else {
            Err(format!("tcx ingress: {attached:?}"))
        }
    });
    wait_for(
        &speaker,
        "an IPIP packet to the VIP decapsulated and answered",
        || router.run_in(|| echo_through_ipip("10.66.0.2", "10.66.0.1", BGP_VIP)),
    );
    wait_for(&speaker, "the served VIPs bound to lo", || {
        let lo = node.ip(&["-4", "addr", "show", "dev", "lo"]);
        if lo.contains(BGP_VIP) && lo.contains(L2_VIP) {
            Ok(())
        } else {
            Err(lo)
        }
    });
    let arp_ignore = node.exec("cat", &["/proc/sys/net/ipv4/conf/all/arp_ignore"]);
    assert_eq!(arp_ignore.trim(), "1", "arp_ignore in the node namespace");
    let root_ns = std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/arp_ignore")
        .expect("the test's own arp_ignore");
    assert!(
        speaker.running(),
        "speaker stopped:\n{}\n(host arp_ignore {root_ns})",
        speaker.logs()
    );
}

#[test]
fn the_controller_image_without_an_api_server_keeps_running_and_serves_healthz() {
    require_privileged!();
    build_images();
    let docs = render_chart(&[]);
    let pod = PodRun::from_chart(&docs, "Deployment", "herald-controller", "controller");
    assert_eq!(
        pod.user,
        Some(65532),
        "the chart runs the controller as 65532"
    );
    let ns = Netns::new("img-c");
    let dir = tempfile::tempdir().expect("temp dir");
    // Nothing listens there: the API server is unreachable.
    let config = kubeconfig(dir.path(), "http://127.0.0.1:9");
    let mut podspec = pod.clone();
    // The controller's pod has no hostNetwork; it gets a namespace of its own all the same.
    podspec.host_network = true;
    let controller = Container::run(
        "controller",
        &ns,
        &podspec,
        &[
            ("POD_NAME", "herald-controller-0"),
            ("POD_NAMESPACE", "herald-system"),
        ],
        &[],
        &[
            "--env=KUBECONFIG=/etc/herald-test/kubeconfig".to_owned(),
            format!(
                "--volume={}:/etc/herald-test/kubeconfig:ro",
                config.display()
            ),
        ],
    );
    let admin: SocketAddr = "127.0.0.1:9472".parse().unwrap();
    wait_for(&controller, "/healthz", || {
        herald_tests::http::get(&ns, admin, "/healthz").map(|_| ())
    });
    let ready = herald_tests::http::get(&ns, admin, "/readyz");
    assert!(
        matches!(&ready, Err(status) if status.contains("503")),
        "/readyz without an API server: {ready:?}"
    );
    wait_for(
        &controller,
        "the controller to say it cannot reach the API server",
        || {
            let logs = controller.logs();
            if logs.contains("http://127.0.0.1:9") && logs.contains("client error (Connect)") {
                Ok(())
            } else {
                Err(logs)
            }
        },
    );
}

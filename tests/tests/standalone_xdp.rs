//! `herald-speaker standalone` with the fast path: a balancer node with `--xdp-interface`
//! announces the VIP to a BIRD router over BGP, forwards the VIP's TCP traffic through XDP
//! (IPIP) to two backend hosts running `herald-speaker standalone --decap`, which bind the
//! VIP and answer directly (DSR). A SIGKILL of the balancer's speaker keeps forwarding (pinned
//! maps and attachment), a restart adopts them, SIGTERM with `--on-exit withdraw` detaches
//! and removes them; a plain SIGTERM (a planned restart) keeps them for the next start.
//!
//! ```text
//!   client 10.31.9.2 ── router 10.31.9.1 / 10.31.0.1 / 10.31.{1,2}.1 (BIRD, kernel export)
//!                          ├── lb1 10.31.0.2 (XDP on its uplink)
//!                          ├── be1 10.31.1.2 (decap, VIP on lo, name server "be1")
//!                          └── be2 10.31.2.2 (decap, VIP on lo, name server "be2")
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_tests::bird::Bird;
use herald_tests::{
    BpfFs, Conn, Daemon, NameServer, Netns, XdpPass, require_command, require_privileged,
    speaker_status, veth_pair, wait_until, workspace_binary,
};
use nix::sys::signal::Signal;

const DEADLINE: Duration = Duration::from_secs(30);
const VIP: &str = "198.51.100.10";

const BIRD: &str = "
router id 10.31.0.1;
protocol device { }
protocol kernel { ipv4 { export all; }; merge paths on; }
protocol bgp lb1 {
  local 10.31.0.1 as 64513;
  neighbor 10.31.0.2 as 64512;
  passive on;
  graceful restart on;
  error wait time 1, 5;
  ipv4 { import all; export none; };
}
";

const CONFIG: &str = r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: public}
spec: {addresses: [198.51.100.10/32]}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {name: router}
spec:
  peerAddress: 10.31.0.1
  peerASN: 64513
  myASN: 64512
  gracefulRestart: true
  nodeSelectors: [{matchLabels: {role: lb}}]
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: all}
---
apiVersion: v1
kind: Node
metadata: {name: lb1, labels: {role: lb}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec: {type: LoadBalancer, ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: demo
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{port: 80, protocol: TCP}]
endpoints:
  - addresses: [10.31.1.2]
    conditions: {ready: true}
  - addresses: [10.31.2.2]
    conditions: {ready: true}
"#;

fn sysctl(ns: &Netns, settings: &[&str]) {
    let mut args = vec!["-qw"];
    args.extend_from_slice(settings);
    ns.exec("sysctl", &args);
}

/// Replies from the backends carry the VIP as source and arrive where the VIP's route does
/// not point: strict reverse-path filtering would drop them.
fn no_rp_filter(ns: &Netns) {
    sysctl(
        ns,
        &[
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ],
    );
}

struct Backend {
    ns: Netns,
    ifname: String,
    _server: NameServer,
}

struct Lab {
    client: Netns,
    router: Netns,
    lb: Netns,
    lb_if: String,
    backends: Vec<Backend>,
    bird: Bird,
    bpffs: BpfFs,
    dir: tempfile::TempDir,
    _pass: XdpPass,
}

impl Lab {
    fn new() -> Self {
        let router = Netns::new("sxr");
        router.enable_forwarding();
        no_rp_filter(&router);
        let client = Netns::new("sxc");
        let (c_if, _) = veth_pair(&client, &["10.31.9.2/24"], &router, &["10.31.9.1/24"]);
        // veth leaves TCP checksums to "hardware" and XDP-forwarded frames lose that note; a
        // real NIC fills them in on transmit, here the client's kernel must.
        client.exec("ethtool", &["-K", &c_if, "tx", "off"]);
        client.ip(&["route", "add", "default", "via", "10.31.9.1"]);

        let lb = Netns::new("sxl");
        lb.enable_forwarding();
        let (lb_if, r_lb) = veth_pair(&lb, &["10.31.0.2/24"], &router, &["10.31.0.1/24"]);
        lb.ip(&["route", "add", "default", "via", "10.31.0.1"]);
        // Encapsulation adds 20 bytes to full-size client segments.
        lb.ip(&["link", "set", &lb_if, "mtu", "1600"]);
        router.ip(&["link", "set", &r_lb, "mtu", "1600"]);
        // veth delivers XDP_TX frames to its peer only through the peer's XDP path.
        let mut pass = XdpPass::load();
        pass.attach(&router, &r_lb);

        let mut backends = Vec::new();
        for i in 1..=2u8 {
            let ns = Netns::new(&format!("sxb{i}"));
            no_rp_filter(&ns);
            let (b_if, r_b) = veth_pair(
                &ns,
                &[&format!("10.31.{i}.2/24")],
                &router,
                &[&format!("10.31.{i}.1/24")],
            );
            ns.ip(&["route", "add", "default", "via", &format!("10.31.{i}.1")]);
            ns.ip(&["link", "set", &b_if, "mtu", "1600"]);
            router.ip(&["link", "set", &r_b, "mtu", "1600"]);
            let server = NameServer::spawn(
                &ns,
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 80),
                &format!("be{i}"),
            );
            backends.push(Backend {
                ns,
                ifname: b_if,
                _server: server,
            });
        }
        let bird = Bird::start(&router, BIRD);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lb.yaml"), CONFIG).unwrap();
        Lab {
            client,
            router,
            lb,
            lb_if,
            backends,
            bird,
            bpffs: BpfFs::mount(),
            dir,
            _pass: pass,
        }
    }

    fn speaker(&self, ns: &Netns, node: &str, extra: &[&str]) -> Daemon {
        let bin = workspace_binary("herald-speaker");
        let mut cmd = ns.command(bin.to_str().unwrap());
        cmd.args(["standalone", "--node-name", node])
            .arg("--config")
            .arg(self.dir.path().join("lb.yaml"))
            .arg("--state-dir")
            .arg(self.dir.path().join(format!("state-{node}")))
            .arg("--bpf-pin-dir")
            .arg(self.bpffs.pin_dir(node))
            .args(extra);
        Daemon::spawn(&format!("herald-speaker {node}"), &mut cmd)
    }

    /// The balancer; `--on-exit withdraw`, so its SIGTERM clears the dataplane.
    fn balancer(&self) -> Daemon {
        self.speaker(
            &self.lb,
            "lb1",
            &["--xdp-interface", &self.lb_if, "--on-exit", "withdraw"],
        )
    }

    fn xdp_attached(&self) -> bool {
        self.lb
            .ip(&["-d", "link", "show", "dev", &self.lb_if])
            .contains("prog/xdp")
    }

    /// `herald-speaker status --json` of the node in `ns`.
    fn status(&self, ns: &Netns) -> Result<serde_json::Value, String> {
        speaker_status(ns)
    }

    /// One connection from the client to the VIP, greeted by its backend.
    fn connect(&self) -> Result<Conn, String> {
        Conn::open(&self.client, format!("{VIP}:80").parse().unwrap())
    }
}

fn pins(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn tcp_to_a_bgp_vip_goes_through_xdp_to_both_backends_and_survives_a_speaker_crash() {
    require_privileged!();
    require_command("ethtool", "ethtool");
    require_command("bird", "bird2");
    let lab = Lab::new();
    let mut backends: Vec<Daemon> = lab
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            lab.speaker(
                &b.ns,
                &format!("be{}", i + 1),
                &[
                    "--decap",
                    "--decap-interface",
                    &b.ifname,
                    "--on-exit",
                    "withdraw",
                ],
            )
        })
        .collect();
    let mut balancer = lab.balancer();

    // The backends bind the VIP (they are its endpoints); the router learns the route.
    for b in &lab.backends {
        wait_until("the VIP bound to lo on a backend", DEADLINE, || {
            let lo = b.ns.ip(&["addr", "show", "dev", "lo"]);
            if lo.contains(&format!("{VIP}/32")) {
                Ok(())
            } else {
                Err(lo)
            }
        });
    }
    wait_until("the VIP's route in the router's kernel", DEADLINE, || {
        let r = lab.router.ip(&["route", "show", VIP]);
        if r.contains("via 10.31.0.2") {
            Ok(())
        } else {
            Err(format!("{r}\n{}", lab.bird.routes("lb1")))
        }
    });
    assert!(
        lab.xdp_attached(),
        "no XDP program on the balancer's uplink"
    );

    // 40 connections, every one answered, spread over both backends.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..40 {
        let mut conn = lab.connect().expect("a connection to the VIP");
        let name = conn.ask().expect("an answer over the connection");
        *seen.entry(name).or_default() += 1;
    }
    assert_eq!(
        seen.keys().map(String::as_str).collect::<Vec<_>>(),
        ["be1", "be2"],
        "spread {seen:?}"
    );
    // Through XDP, not the kernel: the balancer counted them (SYN, ACK, request, ACK, FIN,
    // at least three per connection) and the backends decapsulated them.
    let status = wait_until("the balancer's counters", DEADLINE, || {
        let s = lab.status(&lab.lb)?;
        match s["dataplane"]["vips"][0]["packets"].as_u64() {
            Some(n) if n >= 40 * 3 => Ok(s),
            _ => Err(s.to_string()),
        }
    });
    assert_eq!(
        status["dataplane"]["vips"][0]["service"], "demo/web",
        "{status:#}"
    );
    wait_until("the backends' decapsulation counters", DEADLINE, || {
        let mut total = 0;
        for b in &lab.backends {
            total += lab.status(&b.ns)?["dataplane"]["decapsulated"]
                .as_u64()
                .unwrap_or(0);
        }
        if total >= 40 * 3 {
            Ok(())
        } else {
            Err(format!("{total} decapsulated"))
        }
    });

    // SIGKILL: the pinned attachment and maps keep forwarding, the open connection lives.
    let mut held = lab.connect().expect("a connection to hold");
    let owner = held.ask().unwrap();
    balancer.kill();
    assert!(
        lab.xdp_attached(),
        "XDP detached when the speaker was killed"
    );
    assert_eq!(
        held.ask().as_deref(),
        Ok(owner.as_str()),
        "held connection moved"
    );
    lab.connect()
        .expect("a new connection while the speaker is down")
        .ask()
        .expect("an answer while the speaker is down");

    // A restart adopts the pinned state: same backend for the held connection.
    let mut restarted = lab.balancer();
    wait_until("the restarted balancer to report its VIP", DEADLINE, || {
        let s = lab.status(&lab.lb)?;
        if s["dataplane"]["vips"]
            .as_array()
            .is_some_and(|v| v.len() == 1)
        {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    assert_eq!(
        held.ask().as_deref(),
        Ok(owner.as_str()),
        "held connection moved"
    );
    assert!(
        lab.router
            .ip(&["route", "show", VIP])
            .contains("via 10.31.0.2")
    );

    // Closed while the path exists (a backend would otherwise wait out its read timeout).
    drop(held);

    // SIGTERM with --on-exit withdraw: detached, pins removed; the backends unbind the VIP.
    restarted.signal(Signal::SIGTERM);
    wait_until("the balancer to exit", DEADLINE, || {
        if restarted.has_exited() {
            Ok(())
        } else {
            Err("running".to_owned())
        }
    });
    // Unpinning the link detaches from a kernel work item, not always before exit.
    wait_until("XDP detached after SIGTERM", DEADLINE, || {
        if lab.xdp_attached() {
            Err("attached".to_owned())
        } else {
            Ok(())
        }
    });
    let left = pins(&lab.bpffs.pin_dir("lb1"));
    assert!(left.is_empty(), "pins left behind: {left:?}");
    for (b, d) in lab.backends.iter().zip(&mut backends) {
        d.signal(Signal::SIGTERM);
        wait_until("a backend speaker to exit", DEADLINE, || {
            if d.has_exited() {
                Ok(())
            } else {
                Err("running".to_owned())
            }
        });
        let lo = b.ns.ip(&["addr", "show", "dev", "lo"]);
        assert!(!lo.contains(VIP), "VIP still bound after SIGTERM:\n{lo}");
    }
}

#[test]
fn a_planned_restart_leaves_the_balancer_forwarding_for_the_next_start_to_adopt() {
    require_privileged!();
    let ns = Netns::new("sxk");
    let peer = Netns::new("sxkp");
    let (ifname, _) = veth_pair(&ns, &["10.31.0.2/24"], &peer, &["10.31.0.1/24"]);
    let bpffs = BpfFs::mount();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lb.yaml"), CONFIG).unwrap();
    let pin_dir = bpffs.pin_dir("n");
    let speaker = |extra: &[&str]| {
        let bin = workspace_binary("herald-speaker");
        let mut cmd = ns.command(bin.to_str().unwrap());
        // Not lb1: no BGP session, only the data plane.
        cmd.args(["standalone", "--node-name", "n", "--xdp-interface", &ifname])
            .arg("--config")
            .arg(dir.path().join("lb.yaml"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--bpf-pin-dir")
            .arg(&pin_dir)
            .args(extra);
        Daemon::spawn("herald-speaker", &mut cmd)
    };
    let attached = || {
        ns.ip(&["-d", "link", "show", "dev", &ifname])
            .contains("prog/xdp")
    };
    let vips = || -> Result<usize, String> {
        let bin = workspace_binary("herald-speaker");
        let out = ns
            .command(bin.to_str().unwrap())
            .args(["status", "--json"])
            .output()
            .map_err(|e| e.to_string())?;
        let s: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        Ok(s["dataplane"]["vips"].as_array().map_or(0, Vec::len))
    };
    let stop = |mut d: Daemon| {
        d.signal(Signal::SIGTERM);
        wait_until("the speaker to exit", DEADLINE, || {
            if d.has_exited() {
                Ok(())
            } else {
                Err("running".to_owned())
            }
        });
    };

    // SIGTERM by default is a planned restart: everything stays.
    let first = speaker(&[]);
    wait_until("the VIP programmed", DEADLINE, || match vips()? {
        1 => Ok(()),
        n => Err(format!("{n} VIPs")),
    });
    stop(first);
    assert!(attached(), "a planned restart detached the balancer");
    assert!(
        pin_dir.join("herald_vips").exists(),
        "maps unpinned: {:?}",
        pins(&pin_dir)
    );

    // The next start adopts the kept state; with --on-exit withdraw, SIGTERM then clears it.
    let second = speaker(&["--on-exit", "withdraw"]);
    wait_until("the kept VIP adopted", DEADLINE, || match vips()? {
        1 => Ok(()),
        n => Err(format!("{n} VIPs")),
    });
    stop(second);
    wait_until("XDP detached after SIGTERM", DEADLINE, || {
        if attached() {
            Err("attached".to_owned())
        } else {
            Ok(())
        }
    });
    assert!(pins(&pin_dir).is_empty(), "pins left: {:?}", pins(&pin_dir));
}

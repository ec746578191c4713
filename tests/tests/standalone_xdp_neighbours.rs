//! The XDP balancer resolves its backends' next hops itself (issue 13): `bpf_fib_lookup` only
//! reads the neighbour table, so a balancer that never talked to its backends dropped every
//! VIP packet as `no_neighbour`. The speaker keeps a managed neighbour entry (marked `proto
//! 72`) for each next hop: a backend on a connected link is its own next hop, one behind a
//! router has the router as next hop.
//!
//! ```text
//!   client 10.34.9.2 ── lb_c 10.34.9.1 ┤lb (XDP on lb_c)├ lb_1 10.34.1.1 ── be1 10.34.1.2
//!                                       │               └ lb_r 10.34.2.1 ── router 10.34.2.2
//!                                       │                                   10.34.3.1 ── be2 10.34.3.2
//! ```
//!
//! No BGP and no layer 2: the client routes the VIP to the balancer, and nothing else on the
//! balancer talks to the backends or the router, so their entries come from Herald alone.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use herald_tests::{
    BpfFs, Conn, Daemon, NameServer, Netns, XdpPass, require_command, require_privileged,
    speaker_status, veth_pair, wait_until, workspace_binary,
};
use nix::sys::signal::Signal;

const DEADLINE: Duration = Duration::from_secs(30);
const VIP: &str = "198.51.100.20";
const BE1: &str = "10.34.1.2";
const BE2: &str = "10.34.3.2";
/// be2's next hop from the balancer.
const ROUTER: &str = "10.34.2.2";
/// An entry an administrator made on the balancer: Herald leaves it alone.
const ADMIN: &str = "10.34.1.50";

const CONFIG: &str = r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: public}
spec: {addresses: [198.51.100.20/32]}
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
  - addresses: [10.34.1.2]
    conditions: {ready: true}
  - addresses: [10.34.3.2]
    conditions: {ready: true}
"#;

fn sysctl(ns: &Netns, settings: &[&str]) {
    let mut args = vec!["-qw"];
    args.extend_from_slice(settings);
    ns.exec("sysctl", &args);
}

/// Replies carry the VIP as source, for which the forwarding namespaces have no route.
fn no_rp_filter(ns: &Netns) {
    sysctl(
        ns,
        &[
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ],
    );
}

fn mtu(ns: &Netns, ifname: &str) {
    // Encapsulation adds 20 bytes to full-size client segments.
    ns.ip(&["link", "set", ifname, "mtu", "1600"]);
}

struct Backend {
    ns: Netns,
    ifname: String,
    _server: NameServer,
}

struct Lab {
    client: Netns,
    lb: Netns,
    lb_c: String,
    lb_1: String,
    lb_r: String,
    backends: Vec<Backend>,
    bpffs: BpfFs,
    dir: tempfile::TempDir,
    _pass: XdpPass,
    _router: Netns,
}

impl Lab {
    fn new() -> Self {
        let lb = Netns::new("sxnl");
        lb.enable_forwarding();
        no_rp_filter(&lb);
        let client = Netns::new("sxnc");
        let (c_if, lb_c) = veth_pair(&client, &["10.34.9.2/24"], &lb, &["10.34.9.1/24"]);
        // veth leaves TCP checksums to "hardware" and XDP-forwarded frames lose that note.
        client.exec("ethtool", &["-K", &c_if, "tx", "off"]);
        client.ip(&["route", "add", &format!("{VIP}/32"), "via", "10.34.9.1"]);

        let router = Netns::new("sxnr");
        router.enable_forwarding();
        no_rp_filter(&router);
        let (lb_r, r_lb) = veth_pair(&lb, &["10.34.2.1/24"], &router, &["10.34.2.2/24"]);
        mtu(&lb, &lb_r);
        mtu(&router, &r_lb);
        lb.ip(&["route", "add", "10.34.3.0/24", "via", ROUTER]);
        router.ip(&["route", "add", "10.34.9.0/24", "via", "10.34.2.1"]);

        // veth takes redirected frames only on a peer with an XDP program of its own.
        let mut pass = XdpPass::load();
        pass.attach(&router, &r_lb);
        let mut backends = Vec::new();
        let mut lb_1 = String::new();
        for (i, peer) in [(1u8, &lb), (2, &router)] {
            let ns = Netns::new(&format!("sxnb{i}"));
            no_rp_filter(&ns);
            let (gw, addr) = if i == 1 {
                ("10.34.1.1", BE1)
            } else {
                ("10.34.3.1", BE2)
            };
            let (b_if, p_if) =
                veth_pair(&ns, &[&format!("{addr}/24")], peer, &[&format!("{gw}/24")]);
            mtu(&ns, &b_if);
            mtu(peer, &p_if);
            ns.ip(&["route", "add", "default", "via", gw]);
            pass.attach(&ns, &b_if);
            if i == 1 {
                lb_1 = p_if;
            }
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
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lb.yaml"), CONFIG).unwrap();
        Lab {
            client,
            lb,
            lb_c,
            lb_1,
            lb_r,
            backends,
            bpffs: BpfFs::mount(),
            dir,
            _pass: pass,
            _router: router,
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

    /// The backends' speakers, once each has bound the VIP.
    fn start_backends(&self) -> Vec<Daemon> {
        let daemons = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                self.speaker(
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
        for b in &self.backends {
            wait_until("the VIP bound to lo on a backend", DEADLINE, || {
                let lo = b.ns.ip(&["addr", "show", "dev", "lo"]);
                if lo.contains(&format!("{VIP}/32")) {
                    Ok(())
                } else {
                    Err(lo)
                }
            });
        }
        daemons
    }

    /// The balancer; `--on-exit withdraw`, so its SIGTERM clears what it added.
    fn balancer(&self) -> Daemon {
        self.speaker(
            &self.lb,
            "lb1",
            &["--xdp-interface", &self.lb_c, "--on-exit", "withdraw"],
        )
    }

    /// `ip neigh show ADDR dev IF` on the balancer.
    fn neigh(&self, addr: &str, ifname: &str) -> String {
        self.lb
            .ip(&["neigh", "show", addr, "dev", ifname])
            .trim()
            .to_owned()
    }

    /// Waits until `addr` on `ifname` has Herald's managed entry.
    fn wait_managed(&self, addr: &str, ifname: &str) {
        wait_until(
            &format!("a managed neighbour entry for {addr}"),
            DEADLINE,
            || {
                let n = self.neigh(addr, ifname);
                if n.contains("managed") && n.contains("extern_learn") && n.contains("proto 72") {
                    Ok(())
                } else {
                    Err(n)
                }
            },
        );
    }

    /// Connections until both backends answered; each try is bounded (2 s timeouts) and so
    /// is their number.
    fn reach_both(&self, deadline: Duration) -> BTreeMap<String, usize> {
        let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        wait_until(
            "connections through the VIP to both backends",
            deadline,
            || {
                let mut conn = Conn::open(&self.client, vip)?;
                *seen.entry(conn.ask()?).or_default() += 1;
                if seen.len() == 2 {
                    Ok(())
                } else {
                    Err(format!("{seen:?}"))
                }
            },
        );
        seen
    }

    fn no_neighbour_drops(&self) -> Result<(u64, u64), String> {
        let s = speaker_status(&self.lb)?;
        let d = &s["dataplane"];
        Ok((
            d["drops"]["no_neighbour"].as_u64().unwrap_or(0),
            d["vips"][0]["packets"].as_u64().unwrap_or(0),
        ))
    }

    /// `connections` more connections, all answered, and the `no_neighbour` count the same
    /// once the balancer's counters show them.
    fn assert_no_neighbour_drops_stopped(&self, connections: u64) {
        let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
        let (drops_before, packets_before) = self.no_neighbour_drops().unwrap();
        for _ in 0..connections {
            let mut conn = Conn::open(&self.client, vip).expect("a connection to the VIP");
            conn.ask().expect("an answer over the connection");
        }
        // At least SYN, ACK, request per connection, counted before the status shows them.
        let (drops_after, _) = wait_until("the balancer's counters", DEADLINE, || {
            let (d, p) = self.no_neighbour_drops()?;
            if p >= packets_before + connections * 3 {
                Ok((d, p))
            } else {
                Err(format!("{p} packets, {packets_before} before"))
            }
        });
        assert_eq!(
            drops_after, drops_before,
            "no_neighbour drops still growing over {connections} connections"
        );
    }
}

fn stop(mut d: Daemon) {
    d.signal(Signal::SIGTERM);
    wait_until("a speaker to exit", DEADLINE, || {
        if d.has_exited() {
            Ok(())
        } else {
            Err("running".to_owned())
        }
    });
}

fn pins(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn a_balancer_with_an_empty_neighbour_table_resolves_its_backends_next_hops() {
    require_privileged!();
    require_command("ethtool", "ethtool");
    let lab = Lab::new();
    let _backends = lab.start_backends();

    lab.lb.ip(&["neigh", "flush", "all"]);
    for (addr, ifname) in [(BE1, &lab.lb_1), (ROUTER, &lab.lb_r)] {
        assert_eq!(lab.neigh(addr, ifname), "", "{addr} has an entry already");
    }
    lab.lb.ip(&[
        "neigh",
        "add",
        ADMIN,
        "lladdr",
        "02:00:00:00:00:50",
        "dev",
        &lab.lb_1,
        "nud",
        "permanent",
    ]);

    let started = Instant::now();
    let balancer = lab.balancer();
    let seen = lab.reach_both(DEADLINE);
    eprintln!(
        "both backends answered {:?} after the balancer started: {seen:?}",
        started.elapsed()
    );
    // The connected backend is its own next hop; the routed one's is the router.
    lab.wait_managed(BE1, &lab.lb_1);
    lab.wait_managed(ROUTER, &lab.lb_r);
    let status = speaker_status(&lab.lb).unwrap();
    let mut hops: Vec<&str> = status["dataplane"]["nextHops"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    hops.sort_unstable();
    assert_eq!(
        hops,
        [
            format!("{BE1} dev {}", lab.lb_1),
            format!("{ROUTER} dev {}", lab.lb_r)
        ],
        "{status:#}"
    );
    lab.assert_no_neighbour_drops_stopped(20);

    // SIGTERM with --on-exit withdraw removes what Herald added, and only that.
    stop(balancer);
    let left = lab.lb.ip(&["neigh", "show"]);
    assert!(!left.contains("proto 72"), "Herald's entries left:\n{left}");
    assert!(
        lab.neigh(ADMIN, &lab.lb_1).contains("PERMANENT"),
        "the administrator's entry went:\n{left}"
    );
    assert_eq!(pins(&lab.bpffs.pin_dir("lb1")), 0);
}

#[test]
fn a_next_hop_entry_deleted_while_running_is_restored_and_traffic_goes_on() {
    require_privileged!();
    require_command("ethtool", "ethtool");
    let lab = Lab::new();
    let _backends = lab.start_backends();
    lab.lb.ip(&["neigh", "flush", "all"]);
    let _balancer = lab.balancer();
    lab.reach_both(DEADLINE);
    lab.wait_managed(BE1, &lab.lb_1);
    lab.wait_managed(ROUTER, &lab.lb_r);

    // As garbage collection or an administrator's flush would: the entries go.
    let deleted = Instant::now();
    lab.lb.ip(&["neigh", "del", BE1, "dev", &lab.lb_1]);
    lab.lb.ip(&["neigh", "flush", "dev", &lab.lb_r]);
    // A packet for them finds no neighbour: the keeper is asked to look at once (or the
    // kernel relearns an entry from the backend's own ARP, which the keeper takes over).
    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let _ = Conn::open(&lab.client, vip);
    lab.wait_managed(BE1, &lab.lb_1);
    lab.wait_managed(ROUTER, &lab.lb_r);
    eprintln!("entries restored {:?} after the delete", deleted.elapsed());
    let seen = lab.reach_both(DEADLINE);
    eprintln!(
        "both backends answered {:?} after the delete: {seen:?}",
        deleted.elapsed()
    );
    lab.assert_no_neighbour_drops_stopped(20);
}

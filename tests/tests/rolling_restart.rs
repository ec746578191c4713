//! Day two: a rolling restart of every speaker drops nothing, and a drain moves traffic away
//! before it withdraws. Two nodes announce one VIP over BGP (graceful restart, BFD) to a
//! BIRD router that installs both paths (ECMP, hashed on ports); each node serves HTTP on
//! the VIP from outside the speaker, as kube-proxy or a local server would. A client loops
//! on HTTP requests through the VIP while the speakers are stopped (SIGTERM) and started
//! one at a time.
//!
//! ```text
//!   client 10.40.9.2 ── router 10.40.9.1 (BIRD, kernel export, ECMP)
//!                          ├── 10.40.1.1 ── n1 10.40.1.2 (herald-speaker, VIP on lo, HTTP "n1")
//!                          └── 10.40.2.1 ── n2 10.40.2.2 (herald-speaker, VIP on lo, HTTP "n2")
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use herald_tests::bird::Bird;
use herald_tests::{
    Daemon, NameServer, Netns, require_privileged, veth_pair, wait_until, workspace_binary,
};
use nix::sys::signal::Signal;

const DEADLINE: Duration = Duration::from_secs(30);
const VIP: &str = "198.51.100.20";
const NODES: [&str; 2] = ["n1", "n2"];

const BIRD: &str = "
router id 10.40.9.1;
protocol device { }
protocol kernel { ipv4 { export all; }; merge paths on; }
# RFC 8326 §4.1: a route marked GRACEFUL_SHUTDOWN loses to any other.
filter gshut { if (65535,0) ~ bgp_community then bgp_local_pref = 0; accept; }
protocol bfd { interface \"*\" { interval 100 ms; multiplier 3; }; }
protocol bgp n1 {
  local 10.40.1.1 as 64513; neighbor 10.40.1.2 as 64512; passive on;
  graceful restart on; bfd graceful;
  error wait time 1, 5;
  ipv4 { import filter gshut; export none; };
}
protocol bgp n2 {
  local 10.40.2.1 as 64513; neighbor 10.40.2.2 as 64512; passive on;
  graceful restart on; bfd graceful;
  error wait time 1, 5;
  ipv4 { import filter gshut; export none; };
}
";

const CONFIG: &str = r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: public}
spec: {addresses: [198.51.100.20/32]}
---
apiVersion: herald.dev/v1alpha1
kind: BFDProfile
metadata: {name: fast}
spec: {receiveInterval: 100, transmitInterval: 100, detectMultiplier: 3}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {name: router-n1}
spec:
  peerAddress: 10.40.1.1
  peerASN: 64513
  myASN: 64512
  gracefulRestart: true
  bfdProfile: fast
  nodeSelectors: [{matchLabels: {kubernetes.io/hostname: n1}}]
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {name: router-n2}
spec:
  peerAddress: 10.40.2.1
  peerASN: 64513
  myASN: 64512
  gracefulRestart: true
  bfdProfile: fast
  nodeSelectors: [{matchLabels: {kubernetes.io/hostname: n2}}]
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: all}
---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {kubernetes.io/hostname: n1}}
---
apiVersion: v1
kind: Node
metadata: {name: n2, labels: {kubernetes.io/hostname: n2}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec: {type: LoadBalancer, ports: [{port: 80}]}
"#;

struct Node {
    ns: Netns,
    _http: NameServer,
}

struct Lab {
    client: Netns,
    nodes: Vec<Node>,
    bird: Bird,
    _router: Netns,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new(tag: &str) -> Self {
        let router = Netns::new(&format!("{tag}r"));
        router.enable_forwarding();
        // Hash on ports too, so one client's connections use both paths.
        router.exec("sysctl", &["-qw", "net.ipv4.fib_multipath_hash_policy=1"]);
        let client = Netns::new(&format!("{tag}c"));
        veth_pair(&client, &["10.40.9.2/24"], &router, &["10.40.9.1/24"]);
        client.ip(&["route", "add", "default", "via", "10.40.9.1"]);
        let mut nodes = Vec::new();
        for (i, name) in NODES.iter().enumerate() {
            let i = i + 1;
            let ns = Netns::new(&format!("{tag}{i}"));
            veth_pair(
                &ns,
                &[&format!("10.40.{i}.2/24")],
                &router,
                &[&format!("10.40.{i}.1/24")],
            );
            ns.ip(&["route", "add", "default", "via", &format!("10.40.{i}.1")]);
            ns.ip(&["link", "set", "lo", "up"]);
            ns.ip(&["address", "add", &format!("{VIP}/32"), "dev", "lo"]);
            let http = NameServer::http(&ns, format!("{VIP}:80").parse().unwrap(), name);
            nodes.push(Node { ns, _http: http });
        }
        let bird = Bird::start(&router, BIRD);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lb.yaml"), CONFIG).unwrap();
        Lab {
            client,
            nodes,
            bird,
            _router: router,
            dir,
        }
    }

    fn speaker(&self, i: usize, extra: &[&str]) -> Daemon {
        let name = NODES[i];
        let bin = workspace_binary("herald-speaker");
        let mut cmd = self.nodes[i].ns.command(bin.to_str().unwrap());
        cmd.args(["standalone", "--node-name", name])
            .arg("--config")
            .arg(self.dir.path().join("lb.yaml"))
            .arg("--state-dir")
            .arg(self.dir.path().join(format!("state-{name}")))
            .args(extra);
        Daemon::spawn(&format!("herald-speaker {name}"), &mut cmd)
    }

    /// `herald-speaker ARGS` on node `i` (its admin address is the default, on its loopback).
    fn cli(&self, i: usize, args: &[&str]) -> String {
        let bin = workspace_binary("herald-speaker");
        let out = self.nodes[i].ns.try_exec(bin.to_str().unwrap(), args);
        assert!(
            out.status.success(),
            "herald-speaker {args:?} on {}: {}",
            NODES[i],
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until BIRD has `proto` Established with the VIP imported.
    fn wait_serving(&self, proto: &str) {
        wait_until(
            &format!("{proto} established with the VIP"),
            DEADLINE,
            || {
                let p = self.bird.protocol(proto);
                let routes = self.bird.route_count(proto).unwrap_or(0);
                if self.bird.established(proto) && routes == 1 {
                    Ok(())
                } else {
                    Err(p)
                }
            },
        );
    }

    /// The next hops the router's kernel uses for the VIP.
    fn kernel_paths(&self) -> String {
        self._router.ip(&["route", "show", &format!("{VIP}/32")])
    }

    /// BGP withdrawals BIRD received from `proto` (from `show protocols all`).
    fn withdraws(&self, proto: &str) -> u64 {
        let p = self.bird.protocol(proto);
        p.lines()
            .find(|l| l.trim_start().starts_with("Import withdraws:"))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no import withdraw counter for {proto} in\n{p}"))
    }
}

/// A client loop of HTTP GETs through the VIP (one connection each), run until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Tally>>,
}

#[derive(Debug, Default)]
struct Tally {
    ok: BTreeMap<String, u64>,
    failed: Vec<String>,
}

impl Traffic {
    fn start(client: &Netns) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let ns_path = format!("/run/netns/{}", client.name());
        let thread = std::thread::spawn(move || {
            let file = std::fs::File::open(&ns_path).expect("opening the client namespace");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
            let mut tally = Tally::default();
            let started = Instant::now();
            // Bounded in count and time; the owner stops it long before either.
            for _ in 0..200_000 {
                if flag.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(300) {
                    break;
                }
                match get(vip) {
                    Ok(body) => *tally.ok.entry(body).or_default() += 1,
                    Err(e) => tally.failed.push(format!("{:?}: {e}", started.elapsed())),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            tally
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP/1.0 GET on a new connection: the body of a 200.
fn get(addr: SocketAddr) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(s, "GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("read: {e}"))?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.0 200") => Ok(body.to_owned()),
        _ => Err(format!("response {text:?}")),
    }
}

fn stop(daemon: &mut Daemon) {
    daemon.signal(Signal::SIGTERM);
    wait_until("the speaker to exit after SIGTERM", DEADLINE, || {
        if daemon.has_exited() {
            Ok(())
        } else {
            Err("still running".to_owned())
        }
    });
}

/// The router kernel's route changes (`ip monitor route`), collected by a reader thread; the
/// process ends with the value (SIGKILL by pid), which ends the reader.
struct RouteMonitor {
    daemon: Daemon,
    lines: Option<JoinHandle<Vec<String>>>,
}

impl RouteMonitor {
    fn start(router: &Netns) -> Self {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["-n", router.name(), "monitor", "route"])
            .stdout(std::process::Stdio::piped());
        let mut daemon = Daemon::spawn("ip monitor route", &mut cmd);
        let stdout = daemon.take_stdout().expect("piped stdout");
        let lines = std::thread::spawn(move || {
            use std::io::BufRead;
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .take(100_000)
                .collect()
        });
        RouteMonitor {
            daemon,
            lines: Some(lines),
        }
    }

    /// Events for the VIP that took a path away: a deletion, or a route with fewer than
    /// both next hops. `ip monitor` prints a multipath route over several lines; the
    /// next-hop lines follow their route line.
    fn finish(mut self) -> Vec<String> {
        self.daemon.kill();
        let lines = self.lines.take().unwrap().join().unwrap_or_default();
        let mut events: Vec<String> = Vec::new();
        for line in lines {
            if line.starts_with(char::is_whitespace) {
                if let Some(last) = events.last_mut() {
                    last.push_str(&line);
                }
            } else {
                events.push(line);
            }
        }
        events
            .into_iter()
            .filter(|e| e.contains(VIP))
            .filter(|e| {
                e.starts_with("Deleted") || !(e.contains("10.40.1.2") && e.contains("10.40.2.2"))
            })
            .collect()
    }
}

/// What a rolling restart did.
struct Rolled {
    tally: Tally,
    /// Withdrawals BIRD received per node during the rollout.
    withdraws: Vec<u64>,
    /// SIGTERM to the new process's session Established with the route, per restart.
    restarts: Vec<Duration>,
    /// Restarts after whose SIGTERM the router no longer had the node's route.
    routes_lost: usize,
    /// Route changes in the router's kernel that took a path away from the VIP.
    path_losses: Vec<String>,
    elapsed: Duration,
}

impl Rolled {
    fn total(&self) -> u64 {
        self.tally.ok.values().sum::<u64>() + self.tally.failed.len() as u64
    }

    fn print(&self, mode: &str) {
        let mut sorted = self.restarts.clone();
        sorted.sort();
        eprintln!(
            "rolling restart (--on-exit {mode}): {} speaker restarts in {:.1?} (median {:.0?} \
             each), {} requests, per node {:?}, {} failed, routes lost at SIGTERM {}, \
             withdrawals at BIRD {:?}, paths lost in the router's kernel {}",
            self.restarts.len(),
            self.elapsed,
            sorted[sorted.len() / 2],
            self.total(),
            self.tally.ok,
            self.tally.failed.len(),
            self.routes_lost,
            self.withdraws,
            self.path_losses.len(),
        );
    }
}

/// Starts both speakers with `extra`, then restarts each in turn `rounds` times (SIGTERM,
/// start, wait for its session and route) under HTTP traffic through the VIP.
fn roll(lab: &Lab, rounds: usize, extra: &[&str]) -> Rolled {
    let mut speakers: Vec<Daemon> = (0..NODES.len()).map(|i| lab.speaker(i, extra)).collect();
    for proto in NODES {
        lab.wait_serving(proto);
    }
    wait_until("two paths in the router's kernel", DEADLINE, || {
        let r = lab.kernel_paths();
        if r.contains("10.40.1.2") && r.contains("10.40.2.2") {
            Ok(())
        } else {
            Err(r)
        }
    });
    let before: Vec<u64> = NODES.iter().map(|p| lab.withdraws(p)).collect();
    let monitor = RouteMonitor::start(&lab._router);
    let traffic = Traffic::start(&lab.client);
    let started = Instant::now();
    let mut restarts = Vec::new();
    let mut routes_lost = 0;
    for _ in 0..rounds {
        for i in 0..NODES.len() {
            let t = Instant::now();
            stop(&mut speakers[i]);
            if lab.bird.route_count(NODES[i]).unwrap_or(0) != 1 {
                routes_lost += 1;
            }
            speakers[i] = lab.speaker(i, extra);
            lab.wait_serving(NODES[i]);
            restarts.push(t.elapsed());
        }
    }
    let elapsed = started.elapsed();
    let tally = traffic.finish();
    let path_losses = monitor.finish();
    let withdraws = NODES
        .iter()
        .zip(&before)
        .map(|(p, b)| lab.withdraws(p) - b)
        .collect();
    for s in &mut speakers {
        stop(s);
    }
    Rolled {
        tally,
        withdraws,
        restarts,
        routes_lost,
        path_losses,
        elapsed,
    }
}

#[test]
fn a_rolling_restart_of_every_speaker_fails_no_request_and_withdraws_nothing() {
    require_privileged!();
    let lab = Lab::new("rr");
    let rolled = roll(&lab, 2, &[]);
    rolled.print("restart");
    let failed = &rolled.tally.failed;
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        rolled.total(),
        &failed[..failed.len().min(10)]
    );
    assert_eq!(rolled.routes_lost, 0, "a SIGTERM removed a route at BIRD");
    assert_eq!(rolled.withdraws, vec![0, 0], "BIRD received withdrawals");
    assert!(
        rolled.path_losses.is_empty(),
        "the router's kernel lost a path: {:?}",
        rolled.path_losses
    );
    for name in NODES {
        assert!(
            rolled.tally.ok.get(name).is_some_and(|n| *n > 0),
            "no request reached {name}: {:?}",
            rolled.tally.ok
        );
    }
    assert!(rolled.total() > 100, "too few requests: {}", rolled.total());
}

/// The figure for docs/benchmarks.md: five rounds with the default, and the same with
/// `--on-exit withdraw` (how every SIGTERM behaved before) as the anchor.
#[test]
#[ignore = "benchmark: cargo test --release -p herald-tests --test rolling_restart -- --ignored --nocapture"]
fn rolling_restart_bench() {
    require_privileged!();
    let lab = Lab::new("rb");
    let planned = roll(&lab, 5, &[]);
    planned.print("restart");
    let anchor = roll(&lab, 5, &["--on-exit", "withdraw"]);
    anchor.print("withdraw");
    eprintln!(
        "paths lost at the router: {} with --on-exit restart, {} with withdraw; failed requests \
         {} vs {}",
        planned.path_losses.len(),
        anchor.path_losses.len(),
        planned.tally.failed.len(),
        anchor.tally.failed.len(),
    );
}

#[test]
fn a_drain_moves_traffic_away_while_the_node_still_serves_then_withdraws_and_undo_returns() {
    require_privileged!();
    let lab = Lab::new("rd");
    let mut speakers: Vec<Daemon> = (0..NODES.len()).map(|i| lab.speaker(i, &[])).collect();
    for proto in NODES {
        lab.wait_serving(proto);
    }
    let traffic = Traffic::start(&lab.client);

    let said = lab.cli(0, &["drain", "--wait", "6s"]);
    assert!(said.contains("draining"), "{said}");
    let routes = wait_until("GRACEFUL_SHUTDOWN on n1's route", DEADLINE, || {
        let r = lab.bird.routes("n1");
        if r.contains("(65535,0)") {
            Ok(r)
        } else {
            Err(r)
        }
    });
    assert!(routes.contains(VIP), "{routes}");
    assert!(
        !lab.bird.routes("n2").contains("(65535,0)"),
        "n2 was marked too"
    );
    // The router honours the mark: n1's path leaves its forwarding table during the wait,
    // while n1 still announces and serves.
    wait_until(
        "the router to move traffic off n1 while it drains",
        DEADLINE,
        || {
            let r = lab.kernel_paths();
            if r.contains("10.40.1.2") {
                Err(r)
            } else {
                Ok(())
            }
        },
    );
    let status = lab.cli(0, &["status"]);
    assert!(status.contains("DRAINING"), "{status}");
    assert_eq!(lab.bird.route_count("n1").unwrap_or(0), 1);
    wait_until(
        "n1's route withdrawn after the wait",
        DEADLINE,
        || match lab.bird.route_count("n1") {
            Ok(0) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert!(lab.cli(0, &["status"]).contains("DRAINED"));
    // Traffic now reaches n2 only; n1's session itself stays up.
    assert!(lab.bird.established("n1"));
    wait_until("the kernel to forget n1's path", DEADLINE, || {
        let r = lab.kernel_paths();
        if r.contains("10.40.1.2") {
            Err(r)
        } else {
            Ok(())
        }
    });

    lab.cli(0, &["drain", "--undo"]);
    lab.wait_serving("n1");
    let r = lab.bird.routes("n1");
    assert!(!r.contains("(65535,0)"), "still marked after undo:\n{r}");
    let tally = traffic.finish();
    // Two changes of the router's ECMP set (n1 out at the mark, back at undo): plain ECMP
    // rehashes a connection open at that instant to the other node, which resets it. New
    // connections never fail; at most one request per change may.
    assert!(
        tally.failed.len() <= 2,
        "requests failed during the drain: {:?}",
        &tally.failed[..tally.failed.len().min(10)]
    );
    assert!(tally.ok.get("n2").is_some_and(|n| *n > 0), "{:?}", tally.ok);

    // A bad wait is refused with a message, and nothing changes.
    let bin = workspace_binary("herald-speaker");
    let out = lab.nodes[0]
        .ns
        .try_exec(bin.to_str().unwrap(), &["drain", "--wait", "soon"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wait=soon"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lab.bird.route_count("n1").unwrap_or(0), 1);

    // The Node annotation drains too (a cluster's way; here the Node object in the file),
    // and removing it serves again.
    let config = lab.dir.path().join("lb.yaml");
    let annotated = CONFIG.replace(
        "metadata: {name: n1, labels:",
        "metadata: {name: n1, annotations: {herald.dev/drain: \"true\"}, labels:",
    );
    assert_ne!(annotated, CONFIG);
    std::fs::write(&config, &annotated).unwrap();
    wait_until("GRACEFUL_SHUTDOWN from the annotation", DEADLINE, || {
        let r = lab.bird.routes("n1");
        if r.contains("(65535,0)") {
            Ok(())
        } else {
            Err(r)
        }
    });
    std::fs::write(&config, CONFIG).unwrap();
    wait_until("the mark gone with the annotation", DEADLINE, || {
        let r = lab.bird.routes("n1");
        if r.contains(VIP) && !r.contains("(65535,0)") {
            Ok(())
        } else {
            Err(r)
        }
    });
    for s in &mut speakers {
        stop(s);
    }
}

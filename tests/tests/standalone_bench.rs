//! Benchmark (ignored by default; `cargo test --release -p herald-tests --test standalone_bench
//! -- --ignored --nocapture`): time from a configuration change to the route being in BIRD's
//! table, for `herald-speaker standalone` (a Service added to its YAML file) and, as the anchor
//! in the same run, for a BIRD sender (a static route added to its config, `birdc configure`).
//! Goal: Herald's p99 ≤ 100 ms.

use std::path::Path;
use std::time::{Duration, Instant};

use herald_tests::bird::Bird;
use herald_tests::{Daemon, Netns, require_privileged, veth_pair, wait_until, workspace_binary};

const CHANGES: usize = 100;

const RECEIVER: &str = "router id 10.0.0.2;
protocol device { }
protocol bgp node { local 10.0.0.2 as 64513; neighbor 10.0.0.1 as 64512; passive on;
  ipv4 { import all; export none; }; }
protocol bgp anchor { local 10.0.1.2 as 64513; neighbor 10.0.1.1 as 64514; passive on;
  ipv4 { import all; export none; }; }
";

const BASE: &str = r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: public}
spec: {addresses: [198.51.100.0/24]}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {name: router}
spec: {peerAddress: 10.0.0.2, peerASN: 64513, myASN: 64512}
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: all}
"#;

fn herald_config(path: &Path, services: usize) {
    let mut text = BASE.to_owned();
    for i in 0..services {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: b}}\n\
             spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
        ));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn sender_config(routes: usize) -> String {
    let mut statics = String::new();
    for i in 0..routes {
        statics.push_str(&format!("  route 203.0.113.{i}/32 blackhole;\n"));
    }
    format!(
        "router id 10.0.1.1;\nprotocol device {{ }}\nprotocol static pool {{ ipv4;\n{statics}}}\n\
         protocol bgp feed {{ local 10.0.1.1 as 64514; neighbor 10.0.1.2 as 64513;\n\
         ipv4 {{ import none; export all; }}; }}\n"
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Applies change `i` with `change`, then polls the receiver until `proto` has `i + 1` routes.
fn measure(receiver: &Bird, proto: &str, mut change: impl FnMut(usize)) -> Vec<Duration> {
    let mut times = Vec::with_capacity(CHANGES);
    for i in 0..CHANGES {
        let start = Instant::now();
        change(i);
        loop {
            if receiver.route_count(proto) == Ok(i + 1) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "change {i} never arrived at {proto}"
            );
        }
        times.push(start.elapsed());
    }
    times.sort();
    times
}

#[test]
#[ignore = "benchmark; run explicitly"]
fn config_change_to_route_at_bird() {
    require_privileged!();
    let (node, router, anchor) = (
        Netns::new("sbn-n"),
        Netns::new("sbn-r"),
        Netns::new("sbn-a"),
    );
    veth_pair(&node, &["10.0.0.1/24"], &router, &["10.0.0.2/24"]);
    veth_pair(&anchor, &["10.0.1.1/24"], &router, &["10.0.1.2/24"]);
    let receiver = Bird::start(&router, RECEIVER);
    let sender = Bird::start(&anchor, &sender_config(0));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lb.yaml");
    herald_config(&config, 0);
    let bin = workspace_binary("herald-speaker");
    let mut cmd = node.command(bin.to_str().unwrap());
    cmd.args(["standalone", "--node-name", "n1"])
        .arg("--config")
        .arg(&config);
    cmd.arg("--state-dir").arg(dir.path().join("state"));
    let _speaker = Daemon::spawn("herald-speaker", &mut cmd);
    for proto in ["node", "anchor"] {
        wait_until(
            &format!("{proto} Established"),
            Duration::from_secs(30),
            || {
                if receiver.established(proto) {
                    Ok(())
                } else {
                    Err(receiver.protocol(proto))
                }
            },
        );
    }

    let herald = measure(&receiver, "node", |i| herald_config(&config, i + 1));
    let conf_path = sender.config_path().to_owned();
    let bird = measure(&receiver, "anchor", |i| {
        std::fs::write(&conf_path, sender_config(i + 1)).unwrap();
        let out = sender.birdc(&["configure"]);
        assert!(
            out.contains("Reconfigured") || out.contains("Reconfiguration"),
            "{out}"
        );
    });
    let (h50, h99) = (percentile(&herald, 0.5), percentile(&herald, 0.99));
    let (b50, b99) = (percentile(&bird, 0.5), percentile(&bird, 0.99));
    println!("config change -> route at BIRD, {CHANGES} changes each");
    println!("herald-speaker standalone: p50 {h50:?}  p99 {h99:?}");
    println!("BIRD sender (configure):   p50 {b50:?}  p99 {b99:?}");
    println!(
        "ratio herald / BIRD: p50 {:.2}  p99 {:.2}",
        h50.as_secs_f64() / b50.as_secs_f64(),
        h99.as_secs_f64() / b99.as_secs_f64()
    );
    assert!(h99 <= Duration::from_secs(10));
}

fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("{key}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
#[ignore = "benchmark; run explicitly"]
fn rss_and_idle_cpu_with_1000_vips_and_4_peers() {
    require_privileged!();
    const VIPS: usize = 1000;
    let (node, router) = (Netns::new("sbr-n"), Netns::new("sbr-r"));
    veth_pair(
        &node,
        &["10.0.0.1/24", "10.0.0.3/24", "10.0.0.4/24", "10.0.0.5/24"],
        &router,
        &["10.0.0.2/24"],
    );
    let mut bird_conf = String::from("router id 10.0.0.2;\nprotocol device { }\n");
    for i in [1, 3, 4, 5] {
        bird_conf.push_str(&format!(
            "protocol bgp n{i} {{ local 10.0.0.2 as 64513; neighbor 10.0.0.{i} as 64512; passive on;\n\
             ipv4 {{ import all; export none; }}; }}\n"
        ));
    }
    let receiver = Bird::start(&router, &bird_conf);

    let mut text = String::from(
        "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {name: public}\n\
         spec: {addresses: [198.51.96.0/20]}\n---\n\
         apiVersion: herald.dev/v1alpha1\nkind: BGPAdvertisement\nmetadata: {name: all}\n",
    );
    for i in [1, 3, 4, 5] {
        text.push_str(&format!(
            "---\napiVersion: herald.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: p{i}}}\n\
             spec: {{peerAddress: 10.0.0.2, peerASN: 64513, myASN: 64512, sourceAddress: 10.0.0.{i}}}\n"
        ));
    }
    for i in 0..VIPS {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: b}}\n\
             spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lb.yaml");
    std::fs::write(&config, text).unwrap();
    let bin = workspace_binary("herald-speaker");
    let mut cmd = node.command(bin.to_str().unwrap());
    cmd.args(["standalone", "--node-name", "n1"])
        .arg("--config")
        .arg(&config);
    cmd.arg("--state-dir").arg(dir.path().join("state"));
    let speaker = Daemon::spawn("herald-speaker", &mut cmd);
    for i in [1, 3, 4, 5] {
        let proto = format!("n{i}");
        wait_until(
            &format!("{VIPS} routes from {proto}"),
            Duration::from_secs(60),
            || match receiver.route_count(&proto) {
                Ok(n) if n == VIPS => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }
    let pid = speaker.pid();
    let ticks0 = cpu_ticks(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(10)); // measuring idle CPU: the interval is the point
    let idle = (cpu_ticks(pid) - ticks0) as f64 / 100.0 / t0.elapsed().as_secs_f64();
    let rss = proc_field(pid, "status", "VmRSS:");
    let bird_rss = proc_field(receiver.daemon().pid(), "status", "VmRSS:");
    println!("{VIPS} VIPs announced to 4 peers");
    println!(
        "herald-speaker: RSS {:.1} MiB, idle CPU {:.2} % of a core",
        rss as f64 / 1024.0,
        idle * 100.0
    );
    println!(
        "BIRD receiving 4 x {VIPS} routes: RSS {:.1} MiB",
        bird_rss as f64 / 1024.0
    );
    println!(
        "ratio RSS herald / BIRD: {:.2}",
        rss as f64 / bird_rss as f64
    );
}

//! `herald-speaker standalone` as a user runs it: the binary, its admin HTTP server, its
//! state directory, and config edits while it runs. Loopback only; no privileges needed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use herald_speaker::status::StatusReport;

const BIN: &str = env!("CARGO_BIN_EXE_herald-speaker");

/// A running speaker, killed (by its own pid) when dropped.
struct Speaker {
    child: Child,
    admin: String,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Drop for Speaker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(config: &Path, state: &Path) -> Speaker {
    let mut child = Command::new(BIN)
        .args([
            "standalone",
            "--node-name",
            "n1",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .env("HERALD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting herald-speaker");
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut speaker = Speaker {
        child,
        admin: String::new(),
        lines,
        log: Vec::new(),
    };
    let line = speaker.wait_log("admin HTTP listening");
    let addr = line
        .split("admin_addr=")
        .nth(1)
        .expect("address logged")
        .trim()
        .to_owned();
    speaker.admin = addr;
    speaker.wait_log("standalone speaker running");
    speaker
}

impl Speaker {
    /// Waits (at most 10 s) for a log line containing `needle`; returns it.
    fn wait_log(&mut self, needle: &str) -> String {
        if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no log line with {needle:?}; log so far:\n{}",
            self.log.join("\n")
        );
    }

    fn get(&self, path: &str) -> String {
        ureq::get(&format!("http://{}{path}", self.admin))
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    fn status(&self) -> StatusReport {
        serde_json::from_str(&self.get("/status")).unwrap()
    }

    /// Polls /status until `ok` holds (at most 5 s).
    fn wait_status(&self, what: &str, ok: impl Fn(&StatusReport) -> bool) -> StatusReport {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = self.status();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status: {s:#?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

const BASE: &str = r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: public}
spec: {addresses: [192.0.2.0/29]}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {name: tor}
spec: {peerAddress: 127.0.0.1, peerPort: 9, peerASN: 65001, myASN: 65000}
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: all}
spec: {communities: ["65000:7"]}
"#;

fn svc(name: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: ns}}\n\
         spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
    )
}

fn config_text(services: &[&str]) -> String {
    format!(
        "{BASE}{}",
        services.iter().map(|s| svc(s)).collect::<String>()
    )
}

/// The address the placement gives `key` under `services` (what every host computes).
fn placed(services: &[&str], key: &str) -> String {
    let config =
        herald_api::standalone::load_str(Path::new("lb.yaml"), &config_text(services)).unwrap();
    let outcome = herald_speaker::standalone::allocate::Embedded::new(Default::default())
        .apply(&config)
        .unwrap();
    outcome.assigned[key][0].0.to_string()
}

fn write_config(path: &Path, services: &[&str]) {
    let text = config_text(services);
    // Write then rename, as editors and config management do.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn addresses(s: &StatusReport) -> Vec<(String, Vec<String>)> {
    s.services
        .iter()
        .map(|x| (x.service.clone(), x.addresses.clone()))
        .collect()
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (config, state) = (dir.path().join("lb.yaml"), dir.path().join("state"));
    (dir, config, state)
}

#[test]
fn serves_status_metrics_and_health_with_assigned_addresses_and_desired_routes() {
    let (_dir, config, state) = setup();
    write_config(&config, &["web"]);
    let sp = start(&config, &state);
    let s = sp.status();
    assert_eq!(s.node, "n1");
    assert_eq!(s.config.generation, 1);
    let web = placed(&["web"], "ns/web");
    assert_eq!(
        addresses(&s),
        vec![("ns/web".to_owned(), vec![web.clone()])]
    );
    assert_eq!(s.desired.routes.len(), 1);
    assert_eq!(
        (
            s.desired.routes[0].prefix.as_str(),
            &s.desired.routes[0].communities[..]
        ),
        (format!("{web}/32").as_str(), &["65000:7".to_owned()][..])
    );
    assert_eq!(sp.get("/healthz"), "ok\n");
    assert_eq!(sp.get("/readyz"), "ready\n");
    let metrics = sp.get("/metrics");
    for line in [
        "herald_config_reloads_total{result=\"success\"} 1",
        "herald_pool_addresses_assigned{pool=\"public\",family=\"ipv4\"} 1.0",
        "herald_pool_addresses_available{pool=\"public\",family=\"ipv4\"} 7.0",
        "herald_desired_routes{peer=\"tor\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
    assert!(state.join("assignments.json").exists());

    let out = Command::new(BIN)
        .args(["status", "--admin-addr", &sp.admin])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("SERVICES") && text.contains("ns/web") && text.contains(&format!("{web}/32")),
        "{text}"
    );
}

#[test]
fn config_edits_apply_without_restart_and_invalid_edits_keep_the_old_config() {
    let (_dir, config, state) = setup();
    write_config(&config, &["web"]);
    let mut sp = start(&config, &state);
    let web = sp.status().services[0].addresses.clone();

    write_config(&config, &["web", "api"]);
    let s = sp.wait_status("the api Service", |s| s.services.len() == 2);
    assert_eq!(s.config.generation, 2);
    assert_eq!(
        s.services
            .iter()
            .find(|x| x.service == "ns/web")
            .unwrap()
            .addresses,
        web,
        "web kept its address"
    );

    // An invalid edit: a typo in a field name in document 2 (the BGPPeer), so the
    // required peerASN is missing.
    let bad = format!("{}{}", BASE.replace("peerASN", "peerASn"), svc("web"));
    std::fs::write(&config, bad).unwrap();
    let s = sp.wait_status("the refusal", |s| s.config.last_error.is_some());
    let err = s.config.last_error.clone().unwrap();
    assert!(
        err.contains("lb.yaml")
            && err.contains("document 2")
            && err.contains("tor")
            && err.contains("peerASN"),
        "{err}"
    );
    assert_eq!(s.services.len(), 2, "the previous config keeps running");
    assert_eq!(s.config.generation, 2);
    sp.wait_log("configuration refused");
    assert!(
        sp.get("/metrics")
            .contains("herald_config_reloads_total{result=\"failure\"} 1")
    );

    // Fixing it applies again; removing api releases its address.
    write_config(&config, &["web"]);
    let s = sp.wait_status("the fix", |s| {
        s.config.last_error.is_none() && s.services.len() == 1
    });
    assert_eq!(s.services[0].addresses, web);
    assert_eq!(
        s.config.generation, 3,
        "one generation per edit that applied"
    );
}

#[test]
fn sighup_reloads() {
    let (_dir, config, state) = setup();
    write_config(&config, &["web"]);
    let mut sp = start(&config, &state);
    sp.signal("-HUP");
    sp.wait_log("SIGHUP: reloading");
    sp.wait_status("generation 2", |s| s.config.generation >= 2);
}

#[test]
fn restart_keeps_every_address_with_or_without_the_state_dir() {
    let (dir, config, state) = setup();
    write_config(&config, &["a", "b", "c"]);
    let before = addresses(&start(&config, &state).status());
    // Listed in another order, with the state dir kept, then with an empty one (another
    // host reading the same file): the same placement, nothing reported as moved.
    write_config(&config, &["c", "b", "a"]);
    for state in [state.clone(), dir.path().join("other-host-state")] {
        let after = start(&config, &state).status();
        assert_eq!(addresses(&after), before);
        assert!(after.services.iter().all(|s| s.moved_from.is_empty()));
    }
    // A state written for other addresses (an older version placed by history): the
    // placement stands, the difference is reported.
    std::fs::write(
        state.join("assignments.json"),
        r#"{"version": 1, "services": [{"service": "ns/a", "addresses": ["198.51.100.7"]}]}"#,
    )
    .unwrap();
    let after = start(&config, &state).status();
    assert_eq!(addresses(&after), before);
    let a = after.services.iter().find(|s| s.service == "ns/a").unwrap();
    assert_eq!(a.moved_from, ["198.51.100.7"]);
}

#[test]
fn an_invalid_config_at_start_is_refused_naming_file_object_and_field() {
    let (_dir, config, state) = setup();
    std::fs::write(&config, BASE.replace("192.0.2.0/29", "192.0.2.1/29")).unwrap();
    let out = Command::new(BIN)
        .args([
            "standalone",
            "--node-name",
            "n1",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lb.yaml") && err.contains("public") && err.contains("spec.addresses[0]"),
        "{err}"
    );
}

#[test]
fn layer2_advertisements_without_gossip_flags_are_refused_naming_the_flags() {
    let (_dir, config, state) = setup();
    let text = format!(
        "{BASE}---\napiVersion: herald.dev/v1alpha1\nkind: L2Advertisement\nmetadata: {{name: lan}}\n"
    );
    std::fs::write(&config, text).unwrap();
    let out = Command::new(BIN)
        .args([
            "standalone",
            "--node-name",
            "n1",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("L2Advertisement \"lan\"") && err.contains("--gossip-key-file"),
        "{err}"
    );
}

#[test]
fn layer2_advertisements_that_cannot_select_this_node_need_no_gossip() {
    // A backend host (no Node object, so unlabelled) runs the balancers' file: the
    // L2Advertisement is for labelled nodes only, so it starts without --gossip-*.
    let (_dir, config, state) = setup();
    let text = format!(
        "{BASE}---\napiVersion: herald.dev/v1alpha1\nkind: L2Advertisement\nmetadata: {{name: lan}}\n\
         spec: {{nodeSelectors: [{{matchLabels: {{role: lb}}}}]}}\n"
    );
    std::fs::write(&config, text).unwrap();
    let speaker = start(&config, &state);
    let status = speaker.status();
    assert_eq!(status.config.last_error, None);
    assert!(status.config.generation >= 1, "{status:?}");
}

#[test]
fn failure_detection_timers_out_of_bounds_are_refused_naming_the_flags() {
    let (_dir, config, state) = setup();
    write_config(&config, &["web"]);
    for (flags, want) in [
        (
            &["--l2-probe-interval", "5ms"][..],
            "--l2-probe-interval / --l2-suspect-timeout: probe interval 5ms is outside 10ms..=60s",
        ),
        (
            &["--l2-probe-interval", "1s", "--l2-suspect-timeout", "500ms"],
            "suspect timeout 500ms must be at least the probe interval (1s)",
        ),
        (
            &["--l2-suspect-timeout", "2 minutes"],
            "--l2-suspect-timeout",
        ),
    ] {
        let out = Command::new(BIN)
            .args([
                "standalone",
                "--node-name",
                "n1",
                "--admin-addr",
                "127.0.0.1:0",
            ])
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(&state)
            .args(flags)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flags:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{flags:?}: {err}");
    }
}

#[test]
fn two_hosts_with_different_histories_show_the_same_addresses() {
    // Host A runs the final file from the start; host B was there before: it saw s2 removed
    // and s4 added (with a restart in between), then s2 and s3 added, then s4 removed.
    let (_da, config_a, state_a) = setup();
    let (_db, config_b, state_b) = setup();
    let done = |s: &StatusReport, n: usize| s.config.last_error.is_none() && s.services.len() == n;
    write_config(&config_b, &["s1", "s2"]);
    let b = start(&config_b, &state_b);
    write_config(&config_b, &["s1", "s4"]);
    b.wait_status("s2 gone, s4 in", |s| {
        done(s, 2) && s.services.iter().any(|x| x.service == "ns/s4")
    });
    drop(b);
    let b = start(&config_b, &state_b);
    write_config(&config_b, &["s4", "s3", "s2", "s1"]);
    b.wait_status("four Services", |s| done(s, 4));
    write_config(&config_b, &["s3", "s2", "s1"]);
    let on_b = b.wait_status("s4 gone", |s| done(s, 3));
    write_config(&config_a, &["s1", "s2", "s3"]);
    let on_a = start(&config_a, &state_a).status();
    assert_eq!(addresses(&on_a), addresses(&on_b));
}

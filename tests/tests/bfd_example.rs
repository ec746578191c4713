//! herald-bfd's `bfd-session` example, two of them across a veth pair: the library as another
//! daemon would embed it. They come Up; a stopped session says AdminDown and its peer goes
//! Down for that reason; a killed one is detected by its peer (detection time expired).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_tests::{Daemon, Netns, require_privileged, veth_pair, wait_until, workspace_example};
use nix::sys::signal::Signal;

const DEADLINE: Duration = Duration::from_secs(10);

/// A `bfd-session` process and the states it printed, in order.
struct Session {
    daemon: Daemon,
    /// (when, state, diag).
    states: Arc<Mutex<Vec<(Instant, String, String)>>>,
}

impl Session {
    fn start(ns: &Netns, local: &str, peer: &str) -> Session {
        let bin = workspace_example("bfd-session");
        let mut cmd = ns.command(bin.to_str().expect("a UTF-8 path"));
        cmd.args(["--local", local, "--peer", peer, "--interval-ms", "100"]);
        cmd.stdout(Stdio::piped());
        let mut daemon = Daemon::spawn("bfd-session", &mut cmd);
        let stdout = daemon.take_stdout().expect("piped stdout");
        let states = Arc::new(Mutex::new(Vec::new()));
        let sink = states.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut words = line.split_whitespace();
                if words.next() == Some("state") {
                    let state = words.next().unwrap_or("").to_owned();
                    let diag = words
                        .next()
                        .and_then(|d| d.strip_prefix("diag="))
                        .unwrap_or("")
                        .to_owned();
                    sink.lock().unwrap().push((Instant::now(), state, diag));
                }
            }
        });
        Session { daemon, states }
    }

    /// When and with what diagnostic the session first printed `state` after `since`.
    fn reached(&self, state: &str, since: Instant) -> Result<(Instant, String), String> {
        let states = self.states.lock().unwrap();
        states
            .iter()
            .find(|(at, s, _)| *at >= since && s == state)
            .map(|(at, _, diag)| (*at, diag.clone()))
            .ok_or_else(|| format!("{states:?}"))
    }
}

fn pair(tag: &str) -> (Netns, Netns, Session, Session) {
    let a = Netns::new(&format!("{tag}-a"));
    let b = Netns::new(&format!("{tag}-b"));
    veth_pair(&a, &["10.0.0.1/24"], &b, &["10.0.0.2/24"]);
    let sa = Session::start(&a, "10.0.0.1", "10.0.0.2");
    let sb = Session::start(&b, "10.0.0.2", "10.0.0.1");
    let start = Instant::now() - Duration::from_secs(1);
    wait_until("a Up", DEADLINE, || sa.reached("Up", start));
    wait_until("b Up", DEADLINE, || sb.reached("Up", start));
    (a, b, sa, sb)
}

#[test]
fn a_stopped_session_sends_admin_down_and_its_peer_goes_down_for_that_reason() {
    require_privileged!();
    let (_a, _b, mut sa, sb) = pair("bfdex-stop");
    let stopped = Instant::now();
    sa.daemon.signal(Signal::SIGTERM);
    let (_, diag) = wait_until("b Down", DEADLINE, || sb.reached("Down", stopped));
    assert_eq!(
        diag, "NeighborSignaledSessionDown",
        "b went Down by detection, not by a's AdminDown"
    );
    wait_until("a to exit", DEADLINE, || {
        if sa.daemon.has_exited() {
            Ok(())
        } else {
            Err("still running".into())
        }
    });
}

#[test]
fn a_killed_session_is_detected_by_its_peer() {
    require_privileged!();
    let (_a, _b, mut sa, sb) = pair("bfdex-kill");
    let killed = Instant::now();
    sa.daemon.kill();
    let (down, diag) = wait_until("b Down", DEADLINE, || sb.reached("Down", killed));
    assert_eq!(diag, "ControlDetectionTimeExpired");
    // Three missed packets at 100 ms: well under a second, even on a loaded machine.
    assert!(
        down - killed < Duration::from_secs(2),
        "b took {:?} to see a gone",
        down - killed
    );
}

//! BIRD 2 as a BGP peer: started in a test's namespace with a config written by the test,
//! read back through `birdc`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::{Daemon, Netns, require_command, wait_until};

fn birdc(sock: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("birdc")
        .arg("-s")
        .arg(sock)
        .args(args)
        .output();
    match out {
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("birdc: {e}"),
    }
}

/// A running `bird` (foreground, killed on drop) with its control socket.
#[derive(Debug)]
pub struct Bird {
    daemon: Daemon,
    sock: PathBuf,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl Bird {
    /// Writes `config` and starts BIRD in `ns`; returns once `birdc` answers.
    pub fn start(ns: &Netns, config: &str) -> Self {
        require_command("bird", "bird2");
        require_command("birdc", "bird2");
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("bird.conf");
        let sock = dir.path().join("bird.ctl");
        std::fs::write(&conf, config).expect("writing bird.conf");
        let mut daemon = Daemon::spawn(
            "bird",
            ns.command("bird")
                .env("TZ", "UTC")
                .arg("-f")
                .arg("-c")
                .arg(&conf)
                .arg("-s")
                .arg(&sock)
                .arg("-P")
                .arg(dir.path().join("bird.pid")),
        );
        wait_until("birdc to answer", Duration::from_secs(10), || {
            assert!(
                !daemon.has_exited(),
                "bird exited at start (config error?), config:\n{config}"
            );
            let out = birdc(&sock, &["show", "status"]);
            if out.contains("Daemon is up") {
                Ok(())
            } else {
                Err(out)
            }
        });
        Self {
            daemon,
            sock,
            conf,
            _dir: dir,
        }
    }

    /// The configuration file (rewrite it, then `birdc configure`).
    pub fn config_path(&self) -> &std::path::Path {
        &self.conf
    }

    /// The daemon (for signals).
    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// Runs `birdc args` and returns its output (stdout and stderr).
    pub fn birdc(&self, args: &[&str]) -> String {
        birdc(&self.sock, args)
    }

    /// `show route protocol <proto> all`.
    pub fn routes(&self, proto: &str) -> String {
        self.birdc(&["show", "route", "protocol", proto, "all"])
    }

    /// Number of routes `proto` has in all tables (from `show route protocol P count`).
    pub fn route_count(&self, proto: &str) -> Result<usize, String> {
        let out = self.birdc(&["show", "route", "protocol", proto, "count"]);
        let mut total = 0;
        let mut seen = false;
        for line in out.lines() {
            if line.starts_with("Total:") {
                continue;
            }
            if line.contains(" of ") && line.contains("routes") {
                let n: usize = line
                    .split_whitespace()
                    .next()
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(|| out.clone())?;
                total += n;
                seen = true;
            }
        }
        if seen { Ok(total) } else { Err(out) }
    }

    /// `show protocols all <proto>`.
    pub fn protocol(&self, proto: &str) -> String {
        self.birdc(&["show", "protocols", "all", proto])
    }

    /// Whether `proto` is Established.
    pub fn established(&self, proto: &str) -> bool {
        self.protocol(proto)
            .contains("BGP state:          Established")
    }
}

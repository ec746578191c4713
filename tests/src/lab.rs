//! herald-bgp's `bgp-speaker` example as a process: the BGP library driven from a config
//! file, in a test namespace (see `bgp/examples/bgp-speaker.rs` for the config format).

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use crate::{Daemon, Netns};

/// A running `bgp-speaker`; SIGKILLed on drop.
#[derive(Debug)]
pub struct HeraldLab {
    daemon: Daemon,
    config: PathBuf,
    status: PathBuf,
    _dir: tempfile::TempDir,
}

impl HeraldLab {
    /// Starts herald-bgp's `bgp-speaker` example in `ns` with `config`; a `status` line is
    /// appended.
    pub fn start(ns: &Netns, config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(ns, config, dir)
    }

    fn start_in(ns: &Netns, config: &str, dir: tempfile::TempDir) -> Self {
        let binary = crate::workspace_example("bgp-speaker");
        let conf = dir.path().join("lab.conf");
        let status = dir.path().join("status");
        let _ = std::fs::remove_file(&status);
        std::fs::write(&conf, format!("{config}\nstatus {}\n", status.display()))
            .expect("writing lab.conf");
        let daemon = Daemon::spawn(
            "bgp-speaker",
            ns.command(binary.to_str().expect("a UTF-8 path"))
                .arg(&conf),
        );
        Self {
            daemon,
            config: conf,
            status,
            _dir: dir,
        }
    }

    /// SIGKILLs the process and starts it again with `config` (a crash and restart).
    pub fn restart(mut self, ns: &Netns, config: &str) -> Self {
        self.daemon.kill();
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("temp dir"));
        Self::start_in(ns, config, dir)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// SIGKILL (a crash).
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: Signal) {
        self.daemon.signal(signal);
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        self.daemon.has_exited()
    }

    /// Rewrites the config and sends SIGHUP: the lab sets the new routes.
    pub fn set_config(&self, config: &str) {
        let status = self.status.display();
        std::fs::write(&self.config, format!("{config}\nstatus {status}\n"))
            .expect("writing lab.conf");
        self.signal(Signal::SIGHUP);
    }

    /// The status file (one line per peer: `peer=.. state=.. sent=.. received=..
    /// established=.. updates=.. last_error=..`).
    pub fn status(&self) -> String {
        std::fs::read_to_string(&self.status).unwrap_or_default()
    }

    /// The status file path.
    pub fn status_path(&self) -> &Path {
        &self.status
    }

    /// The value of `key` in the status line of `peer`.
    pub fn field(&self, peer: &str, key: &str) -> Option<String> {
        let status = self.status();
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("peer={peer} ")))?;
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
    }
}

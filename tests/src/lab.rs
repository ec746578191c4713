//! The `herald-bgp-lab` process: Herald's BGP library driven from a config file, in a test
//! namespace (see `src/bin/herald-bgp-lab.rs` for the config format).

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use crate::{Daemon, Netns};

/// A running `herald-bgp-lab`; SIGKILLed on drop.
#[derive(Debug)]
pub struct HeraldLab {
    daemon: Daemon,
    config: PathBuf,
    status: PathBuf,
    _dir: tempfile::TempDir,
}

impl HeraldLab {
    /// Starts `binary` (the test's `env!("CARGO_BIN_EXE_herald-bgp-lab")`) in `ns` with
    /// `config`; a `status` line is appended.
    pub fn start(binary: &str, ns: &Netns, config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(binary, ns, config, dir)
    }

    fn start_in(binary: &str, ns: &Netns, config: &str, dir: tempfile::TempDir) -> Self {
        let conf = dir.path().join("lab.conf");
        let status = dir.path().join("status");
        let _ = std::fs::remove_file(&status);
        std::fs::write(&conf, format!("{config}\nstatus {}\n", status.display()))
            .expect("writing lab.conf");
        let daemon = Daemon::spawn("herald-bgp-lab", ns.command(binary).arg(&conf));
        Self {
            daemon,
            config: conf,
            status,
            _dir: dir,
        }
    }

    /// SIGKILLs the process and starts it again with `config` (a crash and restart).
    pub fn restart(mut self, binary: &str, ns: &Netns, config: &str) -> Self {
        self.daemon.kill();
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().expect("temp dir"));
        Self::start_in(binary, ns, config, dir)
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

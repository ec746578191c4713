//! GoBGP 3 as a BGP peer: `gobgpd` in a test's namespace with a TOML config written by the
//! test, read back through `gobgp ... -j`.

use std::time::Duration;

use crate::{Daemon, Netns, require_command, wait_until};

/// A running `gobgpd` (killed on drop); its gRPC API listens on the namespace's loopback.
#[derive(Debug)]
pub struct GoBgp<'a> {
    _daemon: Daemon,
    ns: &'a Netns,
    _dir: tempfile::TempDir,
}

const API: &str = "127.0.0.1:50051";

impl<'a> GoBgp<'a> {
    /// Writes `toml` and starts gobgpd in `ns`; returns once `gobgp global` answers.
    pub fn start(ns: &'a Netns, toml: &str) -> Self {
        require_command("gobgpd", "gobgpd");
        require_command("gobgp", "gobgpd");
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("gobgpd.toml");
        std::fs::write(&conf, toml).expect("writing gobgpd.toml");
        let daemon = Daemon::spawn(
            "gobgpd",
            ns.command("gobgpd")
                .arg("-f")
                .arg(&conf)
                .arg("-p")
                .arg("--pprof-disable")
                .arg(format!("--api-hosts={API}")),
        );
        let g = Self {
            _daemon: daemon,
            ns,
            _dir: dir,
        };
        wait_until("gobgp to answer", Duration::from_secs(15), || {
            let out = g.gobgp(&["global"]);
            if out.contains("AS:") {
                Ok(())
            } else {
                Err(out)
            }
        });
        g
    }

    /// `gobgp <args>` (against this instance) output.
    pub fn gobgp(&self, args: &[&str]) -> String {
        let mut full = vec!["-u", "127.0.0.1", "-p", "50051"];
        full.extend_from_slice(args);
        let out = self.ns.try_exec("gobgp", &full);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `gobgp <args> -j` parsed as JSON.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        let mut full = args.to_vec();
        full.push("-j");
        let out = self.gobgp(&full);
        serde_json::from_str(&out).map_err(|_| out)
    }
}

/// The path attribute with type `code` (1 ORIGIN, 2 AS_PATH, 3 NEXT_HOP, 8 COMMUNITIES, 14
/// MP_REACH_NLRI, 32 LARGE_COMMUNITY, ...) of a path as `gobgp ... rib -j` prints it.
pub fn path_attr(path: &serde_json::Value, code: u64) -> Option<&serde_json::Value> {
    path.get("attrs")?
        .as_array()?
        .iter()
        .find(|a| a.get("type").and_then(serde_json::Value::as_u64) == Some(code))
}

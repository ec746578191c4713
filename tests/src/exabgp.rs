//! ExaBGP 4 as a BGP peer: `exabgp` in a test's namespace, listening (passive) on the given
//! address, with an API process that appends every message ExaBGP parses (JSON, one per
//! line) to a file the test reads back.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::{Daemon, Netns, require_command, wait_until};

/// A running `exabgp` (killed on drop) and the file its API process writes.
#[derive(Debug)]
pub struct ExaBgp {
    _daemon: Daemon,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// One neighbour of an ExaBGP instance.
#[derive(Debug, Clone)]
pub struct Neighbor<'a> {
    /// The speaker's address.
    pub address: &'a str,
    /// ExaBGP's own address on the session (also where it listens).
    pub local: &'a str,
    /// ExaBGP's AS.
    pub local_as: u32,
    /// The speaker's AS.
    pub peer_as: u32,
    /// Extra lines inside the `neighbor` block (`family { ... }`, `md5-password ...;`).
    pub extra: &'a str,
}

impl ExaBgp {
    /// Starts ExaBGP in `ns`, passive towards `neighbor`, listening on its local address.
    pub fn start(ns: &Netns, router_id: &str, neighbor: &Neighbor<'_>) -> Self {
        require_command("exabgp", "exabgp");
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("messages.json");
        // ExaBGP hands the helper a non-blocking stdin, on which `cat` gives up at once.
        let script = dir.path().join("receive.py");
        std::fs::write(
            &script,
            format!(
                "#!/usr/bin/python3
import os, select, sys
fd = sys.stdin.fileno()
out = open({log:?}, 'ab', buffering=0)
while True:
    select.select([fd], [], [])
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        continue
    if not data:
        break
    out.write(data)
",
                log = log.display().to_string()
            ),
        )
        .expect("receive.py");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let conf = dir.path().join("exabgp.conf");
        let Neighbor {
            address,
            local,
            local_as,
            peer_as,
            extra,
        } = neighbor;
        std::fs::write(
            &conf,
            format!(
                "process receive {{
  run {script};
  encoder json;
}}
neighbor {address} {{
  router-id {router_id};
  local-address {local};
  local-as {local_as};
  peer-as {peer_as};
  passive true;
  {extra}
  api {{
    processes [ receive ];
    receive {{ parsed; update; }}
    neighbor-changes;
  }}
}}
",
                script = script.display()
            ),
        )
        .expect("exabgp.conf");
        let mut cmd = ns.command("exabgp");
        cmd.arg(&conf)
            .env("exabgp_daemon_user", "root")
            .env("exabgp_daemon_drop", "false")
            .env("exabgp_daemon_daemonize", "false")
            .env("exabgp_api_cli", "false")
            .env("exabgp_tcp_bind", local)
            .env("exabgp_tcp_port", "179")
            .env("exabgp_log_destination", "stdout");
        let exa = Self {
            _daemon: Daemon::spawn("exabgp", &mut cmd),
            log,
            _dir: dir,
        };
        // Listening before the test starts a speaker, whose first attempt would otherwise
        // be refused and retried only after its connect time.
        wait_until("exabgp listening", Duration::from_secs(15), || {
            let out = ns.exec("ss", &["-ltnH"]);
            if out.contains(&format!("{local}:179")) {
                Ok(())
            } else {
                Err(out)
            }
        });
        exa
    }

    /// Every message ExaBGP has passed to the API so far.
    pub fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Whether the last neighbour state change reported is `up`.
    pub fn up(&self) -> bool {
        self.messages()
            .iter()
            .rev()
            .find(|m| m["type"] == "state")
            .is_some_and(|m| m["neighbor"]["state"] == "up")
    }

    /// The routes held now: prefix -> (family, next hop, attributes of the UPDATE that
    /// announced it), replaying announcements and withdrawals in order.
    pub fn routes(&self) -> BTreeMap<String, Route> {
        let mut out = BTreeMap::new();
        for m in self.messages() {
            if m["type"] == "state" && m["neighbor"]["state"] == "down" {
                out.clear();
            }
            let update = &m["neighbor"]["message"]["update"];
            if let Some(w) = update["withdraw"].as_object() {
                for nlris in w.values() {
                    for n in nlris.as_array().into_iter().flatten() {
                        if let Some(p) = n["nlri"].as_str() {
                            out.remove(p);
                        }
                    }
                }
            }
            if let Some(a) = update["announce"].as_object() {
                for (family, by_next_hop) in a {
                    for (next_hop, nlris) in by_next_hop.as_object().into_iter().flatten() {
                        for n in nlris.as_array().into_iter().flatten() {
                            if let Some(p) = n["nlri"].as_str() {
                                out.insert(
                                    p.to_owned(),
                                    Route {
                                        family: family.clone(),
                                        next_hop: next_hop.clone(),
                                        attributes: update["attribute"].clone(),
                                    },
                                );
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// A route as ExaBGP reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// `ipv4 unicast` or `ipv6 unicast`.
    pub family: String,
    /// The next hop.
    pub next_hop: String,
    /// ExaBGP's `attribute` object (`origin`, `as-path`, `community`, `large-community`...).
    pub attributes: Value,
}

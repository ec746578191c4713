//! FRR 8 as a BGP (and BFD) peer: `zebra`, `bgpd` and optionally `bfdd` in a test's
//! namespace with sockets and config in a temp dir, read back through `vtysh ... json`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::{Daemon, Netns, require_command, wait_until};

const SBIN: &str = "/usr/lib/frr";

/// Running FRR daemons (killed on drop) and their vty socket directory.
#[derive(Debug)]
pub struct Frr {
    daemons: Vec<Daemon>,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Frr {
    /// Starts zebra, bgpd (with `bgpd_conf`) and, if `bfd`, bfdd in `ns`; returns once
    /// `vtysh` answers. The pathspace (`-N`) is the namespace name.
    pub fn start(ns: &Netns, bgpd_conf: &str, bfd: bool) -> Self {
        require_command("vtysh", "frr");
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        // The daemons drop to user frr: let them write pid files and sockets here.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        std::fs::write(dir.join("zebra.conf"), "").expect("zebra.conf");
        std::fs::write(dir.join("bgpd.conf"), bgpd_conf).expect("bgpd.conf");
        std::fs::write(dir.join("bfdd.conf"), "").expect("bfdd.conf");
        let mut names = vec!["zebra", "bgpd"];
        if bfd {
            names.push("bfdd");
        }
        let mut frr = Self {
            daemons: Vec::new(),
            dir: dir.clone(),
            _tmp: tmp,
        };
        for name in names {
            let mut cmd = ns.command(&format!("{SBIN}/{name}"));
            cmd.arg("-N")
                .arg(ns.name())
                .arg("--vty_socket")
                .arg(&dir)
                .arg("-f")
                .arg(dir.join(format!("{name}.conf")))
                .arg("-i")
                .arg(dir.join(format!("{name}.pid")))
                .arg("-z")
                .arg(dir.join("zserv.api"));
            frr.daemons.push(Daemon::spawn(name, &mut cmd));
            let sock = dir.join(format!("{name}.vty"));
            wait_until(
                &format!("{name} vty socket"),
                Duration::from_secs(15),
                || {
                    if sock.exists() {
                        Ok(())
                    } else {
                        Err(format!("{sock:?} missing"))
                    }
                },
            );
        }
        frr
    }

    /// `vtysh -c <cmd>` output.
    pub fn vtysh(&self, cmd: &str) -> String {
        let out = Command::new("vtysh")
            .arg("--vty_socket")
            .arg(&self.dir)
            .arg("-c")
            .arg(cmd)
            .output();
        match out {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("vtysh: {e}"),
        }
    }

    /// `vtysh -c <cmd>` parsed as JSON (`Err` with the raw output when it is not JSON).
    pub fn json(&self, cmd: &str) -> Result<serde_json::Value, String> {
        let out = self.vtysh(cmd);
        serde_json::from_str(&out).map_err(|_| out)
    }

    /// The BGP state of neighbor `peer` (e.g. "Established").
    pub fn peer_state(&self, peer: &str) -> Option<String> {
        let v = self.json(&format!("show bgp neighbors {peer} json")).ok()?;
        v.get(peer)?.get("bgpState")?.as_str().map(str::to_owned)
    }
}

//! `herald-speaker standalone` end to end against a BIRD router: the YAML configuration turns
//! into routes with the right attributes, edits add and remove them, a crash and restart keeps
//! them (graceful restart), so does SIGTERM (a planned restart), and SIGTERM with
//! `--on-exit withdraw` withdraws them with a Cease.
//!
//! Topology: node namespace (10.0.0.1) -- veth -- router namespace (10.0.0.2, BIRD, AS 64513).

use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_tests::bird::Bird;
use herald_tests::{Daemon, Netns, require_privileged, veth_pair, wait_until, workspace_binary};
use nix::sys::signal::Signal;

const DEADLINE: Duration = Duration::from_secs(30);

const BIRD: &str = "
router id 10.0.0.2;
protocol device { }
protocol bgp node1 {
  local 10.0.0.2 as 64513;
  neighbor 10.0.0.1 as 64512;
  passive on;
  graceful restart on;
  error wait time 1, 5;
  ipv4 { import all; export none; };
  ipv6 { import all; export none; };
}
";

const BASE: &str = r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: public}
spec: {addresses: [198.51.100.0/29]}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {name: router}
spec: {peerAddress: 10.0.0.2, peerASN: 64513, myASN: 64512, gracefulRestart: true}
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: all}
spec: {communities: ["64512:7"], largeCommunities: ["64512:1:2"]}
"#;

fn svc(name: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: demo}}\n\
         spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
    )
}

fn config_text(services: &[&str]) -> String {
    format!(
        "{BASE}{}",
        services.iter().map(|s| svc(s)).collect::<String>()
    )
}

fn write_config(path: &Path, services: &[&str]) {
    let text = config_text(services);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Lab {
    node: Netns,
    bird: Bird,
    _router: Netns,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new(tag: &str) -> Self {
        let node = Netns::new(&format!("{tag}-n"));
        let router = Netns::new(&format!("{tag}-r"));
        veth_pair(&node, &["10.0.0.1/24"], &router, &["10.0.0.2/24"]);
        let bird = Bird::start(&router, BIRD);
        Lab {
            node,
            bird,
            _router: router,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("lb.yaml")
    }

    fn speaker(&self, extra: &[&str]) -> Daemon {
        let bin = workspace_binary("herald-speaker");
        let mut cmd = self.node.command(bin.to_str().unwrap());
        cmd.args([
            "standalone",
            "--node-name",
            "node1",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(self.config())
        .arg("--state-dir")
        .arg(self.dir.path().join("state"))
        .args(extra);
        Daemon::spawn("herald-speaker", &mut cmd)
    }

    fn routes(&self) -> String {
        self.bird.routes("node1")
    }

    fn wait_routes(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        wait_until(what, DEADLINE, || {
            let r = self.routes();
            if ok(&r) { Ok(r) } else { Err(r) }
        })
    }
}

#[test]
fn config_becomes_routes_edits_follow_restarts_keep_them_and_a_withdraw_exit_withdraws() {
    require_privileged!();
    let lab = Lab::new("sabird");
    write_config(&lab.config(), &["web"]);
    let mut speaker = lab.speaker(&[]);

    // The placement's addresses (the same on every host reading this file), with the
    // advertisement's attributes.
    let both = herald_tests::placement::standalone_addresses(&config_text(&["web", "api"]));
    let web = format!("{}/32", both["demo/web"][0]);
    let api = format!("{}/32", both["demo/api"][0]);
    assert_eq!(
        herald_tests::placement::standalone_address(&config_text(&["web"]), "demo/web"),
        both["demo/web"][0],
        "adding api does not move web (no collision for these names)"
    );
    assert_eq!(
        herald_tests::placement::standalone_address(&config_text(&["api"]), "demo/api"),
        both["demo/api"][0],
        "removing web does not move api (no collision for these names)"
    );
    let routes = lab.wait_routes(&format!("{web} at the router"), |r| r.contains(&web));
    for want in [
        "BGP.origin: IGP",
        "BGP.as_path: 64512",
        "BGP.next_hop: 10.0.0.1",
        "BGP.community: (64512,7)",
        "BGP.large_community: (64512, 1, 2)",
    ] {
        assert!(routes.contains(want), "missing {want:?} in\n{routes}");
    }

    // Edits: add api, then remove web. The session itself must not flap:
    // an unchanged BGPPeer keeps its session across reloads.
    let since = || {
        let p = lab.bird.birdc(&["show", "protocols", "node1"]);
        p.lines()
            .find(|l| l.starts_with("node1"))
            .map(str::to_owned)
            .unwrap_or(p)
    };
    let before = since();
    write_config(&lab.config(), &["web", "api"]);
    lab.wait_routes(&format!("{api} for api"), |r| r.contains(&api));
    write_config(&lab.config(), &["api"]);
    lab.wait_routes("web's route withdrawn", |r| {
        !r.contains(&web) && r.contains(&api)
    });
    assert_eq!(since(), before, "the BGP session was restarted by a reload");

    // Crash and restart with the same state dir: the router keeps the route all along
    // (graceful restart), and it is the same address.
    speaker.kill();
    let mut restarted = lab.speaker(&[]);
    wait_until("the session to be re-established", DEADLINE, || {
        let r = lab.routes();
        assert!(r.contains(&api), "route lost during restart:\n{r}");
        if lab.bird.established("node1") && !restarted.has_exited() {
            Ok(())
        } else {
            Err(lab.bird.protocol("node1"))
        }
    });
    let r = lab.routes();
    assert!(r.contains(&api) && !r.contains(&web), "{r}");

    // SIGTERM is a planned restart: the connection closes without a Cease and the router
    // keeps the route (graceful restart) until the next start re-announces it.
    restarted.signal(Signal::SIGTERM);
    wait_until("the speaker to exit", DEADLINE, || {
        if restarted.has_exited() {
            Ok(())
        } else {
            Err("running".to_owned())
        }
    });
    let p = lab.bird.protocol("node1");
    assert!(
        !p.contains("Administrative shutdown"),
        "a Cease at a planned restart:\n{p}"
    );
    assert!(
        lab.routes().contains(&api),
        "route lost at a planned restart:\n{}",
        lab.routes()
    );
    let mut restarted = lab.speaker(&[]);
    wait_until(
        "the session back after the planned restart",
        DEADLINE,
        || {
            assert!(
                lab.routes().contains(&api),
                "route lost during the planned restart"
            );
            if lab.bird.established("node1") {
                Ok(())
            } else {
                Err(lab.bird.protocol("node1"))
            }
        },
    );
    restarted.signal(Signal::SIGTERM);
    wait_until("the speaker to exit", DEADLINE, || {
        if restarted.has_exited() {
            Ok(())
        } else {
            Err("running".to_owned())
        }
    });

    // --on-exit withdraw: Cease with the shutdown text, routes gone at once.
    let leaving = lab.speaker(&["--on-exit", "withdraw"]);
    wait_until("the session back", DEADLINE, || {
        if lab.bird.established("node1") {
            Ok(())
        } else {
            Err(lab.bird.protocol("node1"))
        }
    });
    leaving.signal(Signal::SIGTERM);
    wait_until("the Cease at the router", DEADLINE, || {
        let p = lab.bird.protocol("node1");
        if p.contains("Administrative shutdown") && p.contains("herald-speaker shutting down") {
            Ok(())
        } else {
            Err(p)
        }
    });
    lab.wait_routes("routes withdrawn after SIGTERM", |r| {
        !r.contains("198.51.100.")
    });
}

//! The Helm chart (`deploy/helm/herald`) lints and renders with the real `helm` (3.x; `make
//! test` installs it, see scripts/install-deps.sh), the plain manifests
//! (`deploy/manifests/herald.yaml`) are its rendering with default values, and the chart's
//! `crds/` are the generated CRDs.
//!
//! After changing the chart: `HERALD_BLESS=1 cargo test -p herald-api --test helm`, review and
//! commit the manifests.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The namespace the plain manifests install into.
const NAMESPACE: &str = "herald-system";

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `helm` with `args`; its stdout. Without helm the test fails naming it (set
/// `HERALD_SKIP_PRIVILEGED=1` to skip such tests on a laptop; CI never does).
fn helm(args: &[&str]) -> Option<String> {
    let out = match Command::new("helm").args(args).output() {
        Ok(out) => out,
        Err(e) if std::env::var_os("HERALD_SKIP_PRIVILEGED").is_some() => {
            eprintln!("skipped: helm not runnable ({e}) and HERALD_SKIP_PRIVILEGED is set");
            return None;
        }
        Err(e) => panic!(
            "helm is needed to render the chart and could not be run ({e}): run \
             scripts/install-deps.sh as root (it installs helm 3 to /usr/local/bin)"
        ),
    };
    assert!(
        out.status.success(),
        "helm {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("helm prints UTF-8"))
}

/// `helm template` of the chart in [`NAMESPACE`] with the namespace created, plus `extra`.
fn render(extra: &[&str]) -> Option<String> {
    let chart = deploy().join("helm/herald");
    let chart = chart.to_str().expect("UTF-8 path");
    let mut args = vec![
        "template",
        "herald",
        chart,
        "--namespace",
        NAMESPACE,
        "--set",
        "namespace.create=true",
    ];
    args.extend_from_slice(extra);
    let body = helm(&args)?;
    Some(format!(
        "# Generated from deploy/helm/herald with its default values (namespace.create: true)\n\
         # by `helm template` in api/tests/helm.rs. Do not edit: change the chart, then\n\
         # HERALD_BLESS=1 cargo test -p herald-api --test helm\n{body}"
    ))
}

#[test]
fn the_chart_passes_helm_lint_strict() {
    let chart = deploy().join("helm/herald");
    let Some(out) = helm(&["lint", "--strict", chart.to_str().unwrap()]) else {
        return;
    };
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

#[test]
fn plain_manifests_are_the_chart_rendered_with_default_values() {
    let Some(rendered) = render(&[]) else { return };
    let path = deploy().join("manifests/herald.yaml");
    if std::env::var_os("HERALD_BLESS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    assert!(
        read(&path) == rendered,
        "deploy/manifests/herald.yaml is stale: run `HERALD_BLESS=1 cargo test -p herald-api \
         --test helm` and commit"
    );
}

#[test]
fn every_rendered_document_is_yaml_with_a_kind() {
    let Some(rendered) = render(&[]) else { return };
    let docs: Vec<&str> = rendered.split("\n---\n").skip(1).collect();
    assert!(docs.len() >= 12, "{} documents", docs.len());
    for doc in docs {
        let v: Value = serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        assert!(
            v["kind"].is_string() && v["apiVersion"].is_string(),
            "{doc}"
        );
    }
}

#[test]
fn configuration_values_render_as_herald_objects() {
    let pools =
        r#"pools=[{"name":"public","spec":{"addresses":["192.0.2.0/24"],"autoAssign":false}}]"#;
    let Some(rendered) = render(&["--set-json", pools, "--set", "speaker.sysAdmin=true"]) else {
        return;
    };
    let doc = rendered
        .split("\n---\n")
        .find(|d| d.contains("kind: IPPool"))
        .expect("an IPPool document");
    let pool: herald_api::pool::IPPool = serde_saphyr::from_str(doc).unwrap();
    assert_eq!(pool.metadata.name.as_deref(), Some("public"));
    assert_eq!(pool.spec.addresses, ["192.0.2.0/24"]);
    assert!(!pool.spec.auto_assign);
    assert!(rendered.contains("- SYS_ADMIN"));
}

#[test]
fn a_gossip_key_secret_turns_on_layer_2_gossip_for_the_speakers() {
    let Some(rendered) = render(&["--set", "speaker.gossip.keySecret=herald-gossip"]) else {
        return;
    };
    let doc = rendered
        .split("\n---\n")
        .find(|d| d.contains("kind: DaemonSet"))
        .expect("the speaker DaemonSet");
    let ds: Value = serde_saphyr::from_str(doc).unwrap();
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--gossip-bind=$(HOST_IP):7946"), "{args:?}");
    assert!(
        args.contains(&"--gossip-key-file=/etc/herald/gossip/key"),
        "{args:?}"
    );
    assert!(
        args.contains(&"--l2-probe-interval=15ms") && args.contains(&"--l2-suspect-timeout=60ms"),
        "the default failure-detection timers: {args:?}"
    );
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "HOST_IP"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP")
    );
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "herald-gossip")
    );
    // Off by default.
    let plain = render(&[]).expect("helm ran above");
    assert!(!plain.contains("--gossip-bind"));
}

#[test]
fn gossip_timer_values_become_the_speakers_failure_detection_flags() {
    let Some(rendered) = render(&[
        "--set",
        "speaker.gossip.keySecret=herald-gossip,speaker.gossip.probeInterval=1s,\
         speaker.gossip.suspectTimeout=4s",
    ]) else {
        return;
    };
    for flag in ["- --l2-probe-interval=1s", "- --l2-suspect-timeout=4s"] {
        assert!(rendered.contains(flag), "{flag} missing");
    }
    // Without gossip there is nothing to time.
    let plain = render(&[]).expect("helm ran above");
    assert!(!plain.contains("--l2-"));
}

#[test]
fn xdp_values_become_the_speakers_data_plane_flags() {
    let Some(rendered) = render(&[
        "--set-json",
        r#"speaker.xdp.interfaces=["eth0","eth1"]"#,
        "--set",
        "speaker.xdp.mode=generic,speaker.decap=true",
    ]) else {
        return;
    };
    for flag in [
        "- --xdp-interface=eth0",
        "- --xdp-interface=eth1",
        "- --xdp-mode=generic",
        "- --decap",
    ] {
        assert!(rendered.contains(flag), "{flag} missing");
    }
    let plain = render(&[]).expect("helm ran above");
    assert!(!plain.contains("--xdp-") && !plain.contains("--decap"));
}

#[test]
fn the_speakers_exit_mode_is_a_value_and_defaults_to_a_planned_restart() {
    let Some(plain) = render(&[]) else { return };
    assert!(
        plain.contains("- --on-exit=restart"),
        "default --on-exit missing"
    );
    let leaving = render(&["--set", "speaker.onExit=withdraw"]).expect("helm ran above");
    assert!(leaving.contains("- --on-exit=withdraw"));
    assert!(!leaving.contains("--on-exit=restart"));
}

#[test]
fn lb_class_exclusive_reaches_the_controller_and_every_speaker() {
    let Some(rendered) = render(&[
        "--set",
        "controller.lbClass=example.com/lb,controller.lbClassExclusive=true",
    ]) else {
        return;
    };
    let args_of = |kind: &str| -> Vec<String> {
        let doc = rendered
            .split("\n---\n")
            .find(|d| d.contains(&format!("kind: {kind}\n")))
            .unwrap_or_else(|| panic!("no {kind} rendered"));
        let doc: Value = serde_saphyr::from_str(doc).unwrap();
        doc["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    };
    for kind in ["Deployment", "DaemonSet"] {
        let args = args_of(kind);
        for flag in ["--lb-class=example.com/lb", "--lb-class-exclusive"] {
            assert!(
                args.iter().any(|a| a == flag),
                "{kind}: {flag} missing in {args:?}"
            );
        }
    }
    // Off by default: class-less Services stay Herald's.
    let plain = render(&[]).expect("helm ran above");
    assert!(!plain.contains("--lb-class-exclusive"));
}

#[test]
fn the_controller_may_write_the_status_of_every_herald_kind() {
    let Some(rendered) = render(&[]) else { return };
    let role: Value = rendered
        .split("\n---\n")
        .filter(|d| d.contains("kind: ClusterRole\n"))
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap())
        .find(|d| d["metadata"]["name"] == "herald-controller")
        .expect("the controller's ClusterRole");
    let rules = role["rules"].as_array().unwrap();
    let grants = |resource: &str, verb: &str| {
        rules.iter().any(|r| {
            let has = |field: &str, v: &str| {
                r[field]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == v))
            };
            has("apiGroups", "herald.dev") && has("resources", resource) && has("verbs", verb)
        })
    };
    for kind in [
        "ippools",
        "bgppeers",
        "bgpadvertisements",
        "l2advertisements",
        "bfdprofiles",
    ] {
        for verb in ["get", "list", "watch"] {
            assert!(grants(kind, verb), "{kind}: {verb} missing");
        }
        for verb in ["update", "patch"] {
            let status = format!("{kind}/status");
            assert!(grants(&status, verb), "{status}: {verb} missing");
        }
    }
}

#[test]
fn the_chart_ships_the_generated_crds() {
    let generated = deploy().join("crds");
    let shipped = deploy().join("helm/herald/crds");
    let mut names: Vec<_> = std::fs::read_dir(&generated)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in &names {
        assert!(
            read(&generated.join(name)) == read(&shipped.join(name)),
            "deploy/helm/herald/crds/{} differs from deploy/crds: copy it over",
            name.to_string_lossy()
        );
    }
    assert_eq!(std::fs::read_dir(&shipped).unwrap().count(), names.len());
}

#[test]
fn the_viewer_role_only_gets_and_lists_what_herald_status_reads() {
    let Some(rendered) = render(&[]) else { return };
    let role: Value = rendered
        .split("\n---\n")
        .filter(|d| d.contains("kind: ClusterRole\n"))
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap())
        .find(|d| d["metadata"]["name"] == "herald-viewer")
        .expect("the herald-viewer ClusterRole");
    let rules = role["rules"].as_array().unwrap();
    let mut resources = Vec::new();
    for r in rules {
        assert_eq!(r["verbs"], serde_json::json!(["get", "list"]), "{r}");
        for x in r["resources"].as_array().unwrap() {
            resources.push(x.as_str().unwrap().to_owned());
        }
    }
    resources.sort();
    assert_eq!(
        resources,
        [
            "bfdprofiles",
            "bgpadvertisements",
            "bgppeers",
            "heraldnodes",
            "ippools",
            "l2advertisements",
            "services"
        ]
    );
    assert!(role["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"].is_null());

    let aggregated = render(&["--set", "viewer.aggregateToView=true"]).expect("helm ran above");
    assert!(aggregated.contains("rbac.authorization.k8s.io/aggregate-to-view: \"true\""));
    let without = render(&["--set", "viewer.create=false"]).expect("helm ran above");
    assert!(!without.contains("herald-viewer"));
}

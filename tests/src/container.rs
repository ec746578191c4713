//! Herald's images run with podman the way the chart runs their pods: the pod spec is read
//! from `helm template` output and turned into `podman run` arguments ([`PodRun`]), and the
//! container ([`Container`]) is removed when the test ends, also on failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::Netns;

/// podman with runc: crun refuses hybrid cgroup hierarchies, which test machines can have.
pub fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc"]);
    cmd
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// The tag the test images get.
pub const TAG: &str = "test";

/// Builds `localhost/herald-{controller,speaker}:test` once per test process with
/// `scripts/images.sh` (what `make images` runs), from the debug binaries `make test` built.
/// Panics with the script's output, or naming what is missing.
pub fn build_images() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let out = Command::new(repo_root().join("scripts/images.sh"))
            .current_dir(repo_root())
            .env("PROFILE", "debug")
            .env("TAG", TAG)
            .output()
            .map_err(|e| {
                format!("running scripts/images.sh: {e} (podman, runc and debootstrap are needed: run scripts/install-deps.sh as root)")
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/images.sh failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// `helm template` of the chart with `--namespace herald-system` and `sets` (`--set` values),
/// as JSON documents.
pub fn render_chart(sets: &[&str]) -> Vec<Value> {
    let chart = repo_root().join("deploy/helm/herald");
    let mut cmd = Command::new("helm");
    cmd.args(["template", "herald"])
        .arg(&chart)
        .args(["--namespace", "herald-system"]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "helm could not be run ({e}): run scripts/install-deps.sh as root (it installs helm 3)"
        )
    });
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("helm prints UTF-8");
    text.split("\n---\n")
        .filter(|d| d.contains("kind:"))
        .map(|d| serde_saphyr::from_str(d).unwrap_or_else(|e| panic!("{e}\n{d}")))
        .collect()
}

/// What a chart's pod template says about one of its containers, for `podman run`.
#[derive(Debug, Clone)]
pub struct PodRun {
    /// `image:` with the registry and tag replaced by `localhost/...:test`.
    pub image: String,
    /// `args:`, with `$(VAR)` references still in them.
    pub args: Vec<String>,
    /// Environment variable names the container gets (values are the test's to give).
    pub env: Vec<String>,
    /// Container (or else pod) `runAsUser` and pod `runAsGroup`.
    pub user: Option<u64>,
    /// Pod `runAsGroup`.
    pub group: Option<u64>,
    /// `readOnlyRootFilesystem`.
    pub read_only: bool,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privileges: bool,
    /// `capabilities.drop`.
    pub cap_drop: Vec<String>,
    /// `capabilities.add`.
    pub cap_add: Vec<String>,
    /// Container, else pod, seccomp profile type (`RuntimeDefault`, `Unconfined`).
    pub seccomp: Option<String>,
    /// `hostNetwork`.
    pub host_network: bool,
    /// (mount path, volume) of every `volumeMounts` entry, with `readOnly`.
    pub mounts: Vec<(String, Value, bool)>,
}

impl PodRun {
    /// The `container` of the `kind` named `name` in `docs`.
    pub fn from_chart(docs: &[Value], kind: &str, name: &str, container: &str) -> PodRun {
        let workload = docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in the rendered chart"));
        let pod = &workload["spec"]["template"]["spec"];
        let c = pod["containers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == container))
            .unwrap_or_else(|| panic!("{kind} {name} has no container {container}"));
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| s.as_str().expect("a string").to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let sc = &c["securityContext"];
        let psc = &pod["securityContext"];
        let image = c["image"].as_str().expect("image");
        let base = image.rsplit('/').next().expect("image name");
        let base = base.split(':').next().expect("image name");
        let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
        let mounts = c["volumeMounts"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| {
                        let vol = volumes
                            .iter()
                            .find(|v| v["name"] == m["name"])
                            .cloned()
                            .unwrap_or_else(|| panic!("volume {} is not in the pod", m["name"]));
                        (
                            m["mountPath"].as_str().expect("mountPath").to_owned(),
                            vol,
                            m["readOnly"].as_bool().unwrap_or(false),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        PodRun {
            image: format!("localhost/{base}:{TAG}"),
            args: strings(&c["args"]),
            env: c["env"]
                .as_array()
                .map(|es| {
                    es.iter()
                        .map(|e| e["name"].as_str().expect("env name").to_owned())
                        .collect()
                })
                .unwrap_or_default(),
            user: sc["runAsUser"].as_u64().or(psc["runAsUser"].as_u64()),
            group: sc["runAsGroup"].as_u64().or(psc["runAsGroup"].as_u64()),
            read_only: sc["readOnlyRootFilesystem"].as_bool().unwrap_or(false),
            no_new_privileges: sc["allowPrivilegeEscalation"] == false,
            cap_drop: strings(&sc["capabilities"]["drop"]),
            cap_add: strings(&sc["capabilities"]["add"]),
            seccomp: sc["seccompProfile"]["type"]
                .as_str()
                .or(psc["seccompProfile"]["type"].as_str())
                .map(str::to_owned),
            host_network: pod["hostNetwork"].as_bool().unwrap_or(false),
            mounts,
        }
    }

    /// `args` with `$(VAR)` replaced from `env`.
    pub fn expanded_args(&self, env: &[(&str, &str)]) -> Vec<String> {
        self.args
            .iter()
            .map(|a| {
                let mut a = a.clone();
                for (k, v) in env {
                    a = a.replace(&format!("$({k})"), v);
                }
                a
            })
            .collect()
    }
}

/// A running container, removed (`podman rm -f`) on drop.
#[derive(Debug)]
pub struct Container {
    name: String,
}

/// Hard limits podman may give a container here: its defaults (nofile 1048576, nproc
/// 4194304) exceed what a sandboxed root may set, and the runtime then refuses to start.
/// A kubelet leaves the limits as the container runtime's own, which are the host's.
fn ulimits() -> Vec<String> {
    use nix::sys::resource::{Resource, getrlimit};
    let hard = |r, most: u64| getrlimit(r).map_or(most, |(_, hard)| hard.min(most));
    // Measured here: runc could not set nproc above 32768 though the hard limit was 96369.
    let nofile = hard(Resource::RLIMIT_NOFILE, 1 << 20);
    let nproc = hard(Resource::RLIMIT_NPROC, 32768);
    vec![
        format!("--ulimit=nofile={nofile}:{nofile}"),
        format!("--ulimit=nproc={nproc}:{nproc}"),
    ]
}

impl Container {
    /// `podman run -d` of `pod` in network namespace `ns` (when the pod has `hostNetwork`,
    /// that is the node), with `env` (every variable the pod spec names must be given),
    /// `volumes` (mount path → host path, for every `volumeMounts` entry) and `extra`
    /// arguments before the image (what a kubelet would add, such as `KUBECONFIG`).
    pub fn run(
        tag: &str,
        ns: &Netns,
        pod: &PodRun,
        env: &[(&str, &str)],
        volumes: &[(&str, &Path)],
        extra: &[String],
    ) -> Container {
        let name = format!("herald-{tag}-{}", std::process::id());
        let _ = podman().args(["rm", "-f", "-t", "0", &name]).output();
        let mut cmd = podman();
        cmd.args(["run", "-d", "--name", &name]);
        cmd.args(ulimits());
        assert!(
            pod.host_network,
            "the test runs pods with hostNetwork only (in the node namespace)"
        );
        cmd.arg(format!("--network=ns:/run/netns/{}", ns.name()));
        match (pod.user, pod.group) {
            (Some(u), Some(g)) => cmd.arg(format!("--user={u}:{g}")),
            (Some(u), None) => cmd.arg(format!("--user={u}")),
            _ => &mut cmd,
        };
        if pod.read_only {
            cmd.arg("--read-only");
        }
        if pod.no_new_privileges {
            cmd.arg("--security-opt=no-new-privileges");
        }
        match pod.seccomp.as_deref() {
            Some("RuntimeDefault") | None => {}
            Some("Unconfined") => {
                cmd.arg("--security-opt=seccomp=unconfined");
            }
            Some(other) => panic!("seccomp profile {other} is not known to the test"),
        }
        for c in &pod.cap_drop {
            cmd.arg(format!("--cap-drop={c}"));
        }
        for c in &pod.cap_add {
            cmd.arg(format!("--cap-add={c}"));
        }
        for var in &pod.env {
            let value = env
                .iter()
                .find(|(k, _)| k == var)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| panic!("the pod's env {var} has no value in the test"));
            cmd.arg(format!("--env={var}={value}"));
        }
        for (path, _, read_only) in &pod.mounts {
            let host = volumes
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, h)| *h)
                .unwrap_or_else(|| panic!("the pod mounts {path}: the test gives no volume"));
            let mode = if *read_only { ":ro" } else { "" };
            cmd.arg(format!("--volume={}:{path}{mode}", host.display()));
        }
        cmd.args(extra);
        cmd.arg(&pod.image);
        cmd.args(pod.expanded_args(env));
        let out = cmd.output().expect("running podman");
        assert!(
            out.status.success(),
            "podman run {}: {}",
            pod.image,
            String::from_utf8_lossy(&out.stderr)
        );
        Container { name }
    }

    /// Whether the container is still running.
    pub fn running(&self) -> bool {
        let out = podman()
            .args(["inspect", "--format", "{{.State.Running}}", &self.name])
            .output()
            .expect("podman inspect");
        String::from_utf8_lossy(&out.stdout).trim() == "true"
    }

    /// What the container printed (stdout and stderr).
    pub fn logs(&self) -> String {
        let out = podman()
            .args(["logs", &self.name])
            .output()
            .expect("podman logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.name]).output();
    }
}

//! The plain manifests (`deploy/manifests/herald.yaml`) are the Helm chart
//! (`deploy/helm/herald`) rendered with its default values, and the chart's `crds/` are the
//! generated CRDs.
//!
//! No `helm` binary is available where Herald is built and tested (Debian has no package),
//! so this test renders the chart itself. It understands exactly the template subset the
//! chart uses, and panics on anything else so that the chart cannot silently outgrow it:
//! `{{ .Values.a.b }}`, `{{ .Release.Namespace }}`, `{{ .Chart.AppVersion }}`, `{{ .name }}`
//! inside `range`, whole-line `{{- if PATH }}` / `{{- range PATH }}` / `{{- end }}`, and
//! whole-line `{{- toYaml PATH | nindent N }}` (appended to the line before, as Helm's `{{-`
//! trimming does). Output goes through the same line structure Helm would produce.
//!
//! After changing the chart: `HERALD_BLESS=1 cargo test -p herald-api --test helm`, review and
//! commit the manifests.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The namespace the plain manifests install into.
const NAMESPACE: &str = "herald-system";

/// The templates, in the order the plain manifests list them.
const TEMPLATES: &[&str] = &[
    "namespace.yaml",
    "controller-rbac.yaml",
    "controller-deployment.yaml",
    "speaker-rbac.yaml",
    "speaker-daemonset.yaml",
    "config.yaml",
];

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Scope<'a> {
    root: &'a Value,
    dot: &'a Value,
}

fn lookup<'a>(scope: &Scope<'a>, path: &str) -> &'a Value {
    let path = path.trim();
    let (mut cur, rest) = if let Some(rest) = path.strip_prefix(".Values") {
        (&scope.root["Values"], rest)
    } else if let Some(rest) = path.strip_prefix(".Release") {
        (&scope.root["Release"], rest)
    } else if let Some(rest) = path.strip_prefix(".Chart") {
        (&scope.root["Chart"], rest)
    } else if path.starts_with('.') {
        (scope.dot, path)
    } else {
        panic!("unsupported template expression {path:?}");
    };
    for part in rest.split('.').filter(|p| !p.is_empty()) {
        cur = &cur[part];
    }
    cur
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Number(_) => true,
    }
}

fn scalar(v: &Value, expr: &str) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("{expr} is not a scalar: {other}"),
    }
}

/// A YAML scalar as Helm's `toYaml` writes it: plain where unambiguous, else quoted.
fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
                && s.parse::<f64>().is_err()
                && !["true", "false", "null", "yes", "no", "on", "off", "~"]
                    .contains(&s.to_ascii_lowercase().as_str());
            if plain {
                s.clone()
            } else {
                serde_json::to_string(s).unwrap()
            }
        }
        Value::Null => "null".to_owned(),
        other => other.to_string(),
    }
}

/// Block YAML, keys sorted (as Helm's `toYaml`), lines without a trailing newline.
fn to_yaml(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) if map.is_empty() => out.push("{}".to_owned()),
        Value::Array(items) if items.is_empty() => out.push("[]".to_owned()),
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        out.push(format!("{k}:"));
                        let mut inner = Vec::new();
                        to_yaml(v, &mut inner);
                        out.extend(inner.into_iter().map(|l| format!("  {l}")));
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push(format!("{k}:"));
                        to_yaml(v, out);
                    }
                    Value::Object(_) => out.push(format!("{k}: {{}}")),
                    Value::Array(_) => out.push(format!("{k}: []")),
                    scalar => out.push(format!("{k}: {}", yaml_scalar(scalar))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                let mut inner = Vec::new();
                to_yaml(item, &mut inner);
                for (i, line) in inner.into_iter().enumerate() {
                    out.push(if i == 0 {
                        format!("- {line}")
                    } else {
                        format!("  {line}")
                    });
                }
            }
        }
        scalar => out.push(yaml_scalar(scalar)),
    }
}

fn directive(line: &str) -> Option<&str> {
    let t = line.trim();
    t.strip_prefix("{{-")
        .and_then(|r| r.strip_suffix("}}"))
        .map(str::trim)
        .filter(|_| t.matches("{{").count() == 1)
}

/// Renders `lines` into `out`.
fn render_lines(lines: &[&str], scope: &Scope<'_>, out: &mut Vec<String>) {
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(d) = directive(line) {
            if let Some(cond) = d.strip_prefix("if ") {
                let end = block_end(lines, i);
                if truthy(lookup(scope, cond)) {
                    render_lines(&lines[i + 1..end], scope, out);
                }
                i = end + 1;
                continue;
            }
            if let Some(list) = d.strip_prefix("range ") {
                let end = block_end(lines, i);
                let items = lookup(scope, list);
                for item in items.as_array().into_iter().flatten() {
                    let inner = Scope {
                        root: scope.root,
                        dot: item,
                    };
                    render_lines(&lines[i + 1..end], &inner, out);
                }
                i = end + 1;
                continue;
            }
            if let Some(expr) = d.strip_prefix("toYaml ") {
                let (path, indent) = expr
                    .split_once("| nindent")
                    .unwrap_or_else(|| panic!("toYaml without nindent: {line}"));
                let indent: usize = indent.trim().parse().unwrap();
                let mut yaml = Vec::new();
                to_yaml(lookup(scope, path), &mut yaml);
                // `{{-` trims the preceding newline; `nindent` starts a new line.
                out.extend(
                    yaml.into_iter()
                        .map(|l| format!("{}{l}", " ".repeat(indent))),
                );
                i += 1;
                continue;
            }
            panic!("unsupported directive {line:?}");
        }
        let mut rendered = String::new();
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            rendered.push_str(&rest[..start]);
            let end = rest[start..].find("}}").expect("unclosed {{") + start;
            let expr = rest[start + 2..end].trim();
            assert!(
                !expr.starts_with('-'),
                "inline {{- is unsupported: {line:?}"
            );
            rendered.push_str(&scalar(lookup(scope, expr), expr));
            rest = &rest[end + 2..];
        }
        rendered.push_str(rest);
        out.push(rendered);
        i += 1;
    }
}

/// Index of the `{{- end }}` closing the block opened at `open`.
fn block_end(lines: &[&str], open: usize) -> usize {
    let mut depth = 0;
    for (i, line) in lines.iter().enumerate().skip(open) {
        match directive(line) {
            Some(d) if d.starts_with("if ") || d.starts_with("range ") => depth += 1,
            Some("end") => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    panic!("unclosed block at line {}", open + 1);
}

fn render(values_override: impl FnOnce(&mut Value)) -> String {
    let chart_dir = deploy().join("helm/herald");
    let chart: Value = serde_saphyr::from_str(&read(&chart_dir.join("Chart.yaml"))).unwrap();
    let mut values: Value = serde_saphyr::from_str(&read(&chart_dir.join("values.yaml"))).unwrap();
    values_override(&mut values);
    let root = serde_json::json!({
        "Values": values,
        "Release": { "Namespace": NAMESPACE, "Name": "herald" },
        "Chart": { "AppVersion": chart["appVersion"], "Version": chart["version"] },
    });
    let scope = Scope {
        root: &root,
        dot: &Value::Null,
    };
    let mut out = String::from(
        "# Generated from deploy/helm/herald with its default values (namespace.create: true)\n\
         # by api/tests/helm.rs. Do not edit: change the chart, then\n\
         # HERALD_BLESS=1 cargo test -p herald-api --test helm\n",
    );
    for name in TEMPLATES {
        let text = read(&chart_dir.join("templates").join(name));
        let lines: Vec<&str> = text.lines().collect();
        let mut rendered = Vec::new();
        render_lines(&lines, &scope, &mut rendered);
        let body = rendered.join("\n");
        let body = body.trim_matches('\n');
        if body.trim().is_empty() {
            continue;
        }
        let body = body.strip_prefix("---\n").unwrap_or(body);
        write!(out, "---\n# Source: herald/templates/{name}\n{body}\n").unwrap();
    }
    out
}

#[test]
fn plain_manifests_are_the_chart_rendered_with_default_values() {
    let rendered = render(|v| v["namespace"]["create"] = Value::Bool(true));
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
    let rendered = render(|v| v["namespace"]["create"] = Value::Bool(true));
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
    let rendered = render(|v| {
        v["pools"] = serde_json::json!([
            {"name": "public", "spec": {"addresses": ["192.0.2.0/24"], "autoAssign": false}}
        ]);
        v["speaker"]["sysAdmin"] = Value::Bool(true);
    });
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
    let rendered = render(|v| {
        v["speaker"]["gossip"]["keySecret"] = Value::String("herald-gossip".into());
    });
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
    let plain = render(|_| {});
    assert!(!plain.contains("--gossip-bind"));
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

//! The committed CRDs under deploy/crds are exactly what crdgen writes, and the CEL rules
//! they carry accept good objects and refuse bad ones (evaluated client-side by kube-cel,
//! which implements the Kubernetes CEL environment).

use std::path::PathBuf;

use herald_api::crds;
use serde_json::{Value, json};

#[test]
fn committed_crds_match_crdgen_output() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
    for (file, crd) in crds::all() {
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            committed == crds::render(&crd),
            "deploy/crds/{file} is stale: run `cargo run -p herald-api --bin crdgen` and commit"
        );
    }
}

#[test]
fn crds_are_cluster_scoped_in_the_herald_group() {
    let names: Vec<String> = crds::all()
        .iter()
        .map(|(_, c)| c.spec.names.kind.clone())
        .collect();
    assert_eq!(
        names,
        [
            "IPPool",
            "BGPPeer",
            "BGPAdvertisement",
            "L2Advertisement",
            "BFDProfile",
            "HeraldNode",
        ]
    );
    for (_, crd) in crds::all() {
        assert_eq!(crd.spec.group, "herald.dev");
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.versions[0].name, "v1alpha1");
    }
}

fn schema(kind: &str) -> Value {
    let (_, crd) = crds::all()
        .into_iter()
        .find(|(_, c)| c.spec.names.kind == kind)
        .unwrap();
    let s = crd.spec.versions[0]
        .schema
        .as_ref()
        .unwrap()
        .open_api_v3_schema
        .as_ref()
        .unwrap();
    serde_json::to_value(s).unwrap()
}

/// Errors of validating `spec` against the kind's schema as the API server would: the
/// OpenAPI keywords (types, ranges, patterns, lengths) by a JSON Schema validator, the
/// `x-kubernetes-validations` CEL rules by kube-cel.
fn cel_errors(kind: &str, spec: Value) -> Vec<String> {
    let object = json!({"apiVersion": "herald.dev/v1alpha1", "kind": kind, "metadata": {"name": "x"}, "spec": spec});
    let schema = schema(kind);
    let structural = jsonschema::validator_for(&schema).expect("the schema compiles");
    let mut errors: Vec<String> = structural
        .iter_errors(&object)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if let Err(cel) = kube_cel::validate(&schema, &object, None) {
        errors.extend(
            cel.into_vec()
                .into_iter()
                .map(|e| format!("{}: {}", e.field_path, e.message)),
        );
    }
    errors
}

/// The exact address grammar is the items' OpenAPI `pattern` (free for the API server's CEL
/// cost budget, see tests/cel_cost.rs); a cheap CEL rule adds a readable message when the
/// entry does not even look like an address.
#[test]
fn pool_address_syntax_is_checked_server_side() {
    let ok = json!({"addresses": ["192.0.2.0/24", "2001:db8::/64", "10.0.0.1-10.0.0.9", "fe80::1-fe80::9", "198.51.100.7", "::ffff:192.0.2.1"]});
    assert_eq!(cel_errors("IPPool", ok), Vec::<String>::new());
    let refused_by_pattern = |e: &[String]| {
        e.iter()
            .any(|m| m.starts_with("/spec/addresses/0: ") && m.contains("does not match"))
    };
    for bad in [
        "banana",
        "10.0.0.1-2001:db8::1",
        "2001:db8::1-10.0.0.1",
        "192.0.2.0/24/8",
    ] {
        let e = cel_errors("IPPool", json!({"addresses": [bad]}));
        assert!(refused_by_pattern(&e), "{bad}: {e:?}");
        assert!(
            e.iter().any(|m| m.contains("must be a CIDR")),
            "{bad}: {e:?}"
        );
        assert_eq!(e.len(), 2, "{bad}: {e:?}");
    }
    for bad in [
        "192.0.2.0/33",
        "300.1.1.1",
        "2001:db8::/129",
        "1:2:3:4:5:6:7:8:9",
        "1.2.3-4.5.6.7",
        "10.0.0.01",
    ] {
        // Only the pattern: the CEL rules neither repeat it nor fail to evaluate.
        let e = cel_errors("IPPool", json!({"addresses": [bad]}));
        assert!(refused_by_pattern(&e) && e.len() == 1, "{bad}: {e:?}");
    }
}

#[test]
fn the_address_shape_rule_admits_every_entry_the_pattern_admits() {
    let valid = [
        "0.0.0.0/0",
        "255.255.255.255",
        "::",
        "::/0",
        "::1",
        "1::",
        "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7::",
        "::2:3:4:5:6:7:8",
        "1:2:3:4:5:6:1.2.3.4",
        "::ffff:1.2.3.4/128",
        "::1.2.3.4",
        "FE80::A-fe80::b",
        "::-::1",
        "0.0.0.0-255.255.255.255",
        "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255-ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
    ];
    for entry in valid {
        assert_eq!(
            cel_errors("IPPool", json!({"addresses": [entry]})),
            Vec::<String>::new(),
            "{entry}"
        );
    }
}

#[test]
fn reversed_ipv4_range_is_refused_server_side() {
    let e = cel_errors("IPPool", json!({"addresses": ["10.0.0.9-10.0.0.1"]}));
    assert!(
        e.iter().any(|m| m.contains("must not start above its end")),
        "{e:?}"
    );
    assert!(cel_errors("IPPool", json!({"addresses": ["10.0.0.9-10.0.1.1"]})).is_empty());
    assert!(cel_errors("IPPool", json!({"addresses": ["10.0.0.1-10.0.0.1"]})).is_empty());
    for reversed in [
        "10.0.1.0-10.0.0.255",
        "11.0.0.0-10.255.255.255",
        "10.0.0.2-10.0.0.1",
    ] {
        let e = cel_errors("IPPool", json!({"addresses": [reversed]}));
        assert!(
            e.iter().any(|m| m.contains("must not start above its end")),
            "{reversed}: {e:?}"
        );
    }
}

#[test]
fn peer_timers_and_secrets_are_checked_server_side() {
    let base = json!({"peerAddress": "192.0.2.1", "peerASN": 65001, "myASN": 65000});
    assert_eq!(cel_errors("BGPPeer", base.clone()), Vec::<String>::new());
    let with = |extra: Value| {
        let mut v = base.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        cel_errors("BGPPeer", v)
    };
    assert!(
        with(json!({"holdTime": "2s"}))
            .iter()
            .any(|m| m.contains("holdTime must be 0s"))
    );
    assert!(
        with(json!({"holdTime": "30s", "keepaliveTime": "30s"}))
            .iter()
            .any(|m| m.contains("keepaliveTime must be shorter"))
    );
    assert!(
        with(json!({"keepaliveTime": "100s"}))
            .iter()
            .any(|m| m.contains("keepaliveTime must be shorter"))
    );
    assert!(with(json!({"holdTime": "30s", "keepaliveTime": "10s"})).is_empty());
    assert!(
        with(json!({"password": "a", "passwordSecret": {"name": "s"}}))
            .iter()
            .any(|m| m.contains("mutually exclusive"))
    );
    assert!(!with(json!({"peerASN": 0})).is_empty(), "AS 0 is reserved");
    assert!(!with(json!({"peerAddress": "192.0.2.300"})).is_empty());
    assert!(!with(json!({"holdTime": "ninety"})).is_empty());
}

#[test]
fn communities_are_checked_server_side() {
    assert!(
        cel_errors(
            "BGPAdvertisement",
            json!({"communities": ["65000:1", "no-export"], "largeCommunities": ["4294967295:1:2"]})
        )
        .is_empty()
    );
    assert!(!cel_errors("BGPAdvertisement", json!({"communities": ["65536:1"]})).is_empty());
    assert!(
        !cel_errors(
            "BGPAdvertisement",
            json!({"largeCommunities": ["4294967296:1:2"]})
        )
        .is_empty()
    );
    assert!(!cel_errors("BGPAdvertisement", json!({"aggregationLength": 33})).is_empty());
}

#[test]
fn bfd_ranges_are_checked_server_side() {
    assert!(
        cel_errors(
            "BFDProfile",
            json!({"receiveInterval": 300, "detectMultiplier": 3})
        )
        .is_empty()
    );
    assert!(!cel_errors("BFDProfile", json!({"detectMultiplier": 1})).is_empty());
    assert!(!cel_errors("BFDProfile", json!({"receiveInterval": 5})).is_empty());
}

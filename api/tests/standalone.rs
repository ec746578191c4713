//! The standalone loader: what it accepts, and that every error names file, document,
//! object and field.

use std::path::Path;

use herald_api::standalone::{self, ConfigError};

const GOOD: &str = r#"
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: public}
spec:
  addresses: [192.0.2.0/28, "2001:db8::/64"]
  avoidBuggyIPs: true
  allocateTo: {priority: 10, namespaces: [default]}
---
apiVersion: herald.dev/v1alpha1
kind: BFDProfile
metadata: {name: fast}
spec: {receiveInterval: 100, transmitInterval: 100}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {name: tor}
spec: {peerAddress: 10.0.0.1, peerASN: 65001, myASN: 65000, holdTime: 9s, bfdProfile: fast, password: s3cret}
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: all}
spec: {ipPools: [public], peers: [tor], communities: ["65000:1"]}
---
apiVersion: herald.dev/v1alpha1
kind: L2Advertisement
metadata: {name: lan}
spec: {interfaces: [eth0]}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  annotations: {herald.dev/pool: public}
spec:
  type: LoadBalancer
  ports: [{port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints: [{addresses: [10.1.0.1]}]
---
apiVersion: v1
kind: Node
metadata: {name: node-a, labels: {rack: r1}}
"#;

fn errors(text: &str) -> Vec<String> {
    match standalone::load_str(Path::new("lb.yaml"), text) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_complete_config_loads_every_kind() {
    let c = standalone::load_str(Path::new("lb.yaml"), GOOD).unwrap();
    assert_eq!(c.ip_pools.len(), 1);
    // DESIGN §3 spells it avoidBuggyIPs (as MetalLB does), not serde's avoidBuggyIps.
    assert!(c.ip_pools[0].spec.avoid_buggy_ips);
    assert_eq!(
        c.bgp_peers[0]
            .spec
            .hold_time
            .as_ref()
            .unwrap()
            .get()
            .as_secs(),
        9
    );
    assert_eq!(c.bgp_advertisements.len(), 1);
    assert_eq!(c.l2_advertisements.len(), 1);
    assert_eq!(c.bfd_profiles[0].spec.receive_interval_ms(), 100);
    assert_eq!(c.services[0].metadata.namespace.as_deref(), Some("default"));
    assert_eq!(c.endpoint_slices.len(), 1);
    assert_eq!(c.nodes.len(), 1);
}

#[test]
fn bad_field_names_file_document_object_and_field() {
    let text = GOOD.replace("peerASN: 65001", "peerASN: nope");
    let all = errors(&text);
    assert_eq!(all.len(), 1, "{all:?}");
    let e = &all[0];
    assert!(
        e.starts_with("lb.yaml: document 3: BGPPeer \"tor\": spec.peerASN: "),
        "{e}"
    );
}

#[test]
fn semantic_errors_name_the_field() {
    let text = GOOD.replace("192.0.2.0/28", "192.0.2.1/28");
    assert_eq!(
        errors(&text),
        [
            "lb.yaml: document 1: IPPool \"public\": spec.addresses[0]: \"192.0.2.1/28\" has host bits set; did you mean 192.0.2.0/28?"
        ]
    );
}

#[test]
fn unknown_fields_are_reported_not_ignored() {
    let text = GOOD.replace(
        "{name: public}\nspec:",
        "{name: public}\nspec:\n  autoAsign: false",
    );
    assert_eq!(
        errors(&text),
        ["lb.yaml: document 1: IPPool \"public\": spec.autoAsign: unknown field"]
    );
}

#[test]
fn dangling_references_are_reported() {
    let text = GOOD
        .replace("bfdProfile: fast", "bfdProfile: slow")
        .replace("peers: [tor]", "peers: [tor, spine]");
    let e = errors(&text);
    assert!(
        e.contains(
            &"lb.yaml: document 3: BGPPeer \"tor\": spec.bfdProfile: no BFDProfile \"slow\""
                .to_owned()
        ),
        "{e:?}"
    );
    assert!(
        e.contains(
            &"lb.yaml: document 4: BGPAdvertisement \"all\": spec.peers[1]: no BGPPeer \"spine\""
                .to_owned()
        ),
        "{e:?}"
    );
}

#[test]
fn endpoint_slice_must_name_an_existing_service() {
    let text = GOOD.replace(
        "kubernetes.io/service-name: web",
        "kubernetes.io/service-name: api",
    );
    assert_eq!(
        errors(&text),
        [
            "lb.yaml: document 7: EndpointSlice \"default/web-1\": metadata.labels[\"kubernetes.io/service-name\"]: no Service default/api"
        ]
    );
}

#[test]
fn overlapping_pools_and_duplicates_are_refused() {
    let extra = "\n---\napiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {name: other}\nspec: {addresses: [192.0.2.8-192.0.2.20]}\n---\napiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {name: public}\nspec: {addresses: [198.51.100.0/24]}\n";
    let e = errors(&format!("{GOOD}{extra}"));
    assert_eq!(
        e,
        [
            "lb.yaml: document 10: IPPool \"public\": metadata.name: also defined at lb.yaml: document 1",
            "lb.yaml: document 9: IPPool \"other\": spec.addresses[0]: overlaps IPPool \"public\"",
        ]
    );
}

#[test]
fn services_must_be_load_balancers_with_sane_annotations() {
    let text = GOOD
        .replace("type: LoadBalancer", "type: ClusterIP")
        .replace(
            "herald.dev/pool: public",
            "herald.dev/load-balancer-ips: 192.0.2.1",
        );
    let text = text.replace(
        "name: web\n  annotations",
        "name: web\n  namespace: shop\n  annotations",
    );
    let e = errors(&text);
    assert!(e.contains(&"lb.yaml: document 6: Service \"shop/web\": spec.type: standalone mode serves Services of type LoadBalancer only".to_owned()), "{e:?}");
}

#[test]
fn unknown_kinds_and_yaml_errors_are_reported() {
    let e = errors("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: x}\n");
    assert!(e[0].starts_with("lb.yaml: document 1: \"IPAddressPool\" of \"metallb.io/v1beta1\" is not a kind Herald reads"), "{e:?}");
    let e = errors("kind: [unclosed\n");
    assert!(e[0].starts_with("lb.yaml: "), "{e:?}");
    let e = errors("apiVersion: v1\nkind: Node\nmetadata: {}\n");
    assert_eq!(
        e,
        ["lb.yaml: document 1: Node \"\": metadata.name: is required"]
    );
}

#[test]
fn a_directory_is_read_in_name_order_skipping_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let (pools, rest) = GOOD.split_once("---").unwrap();
    std::fs::write(dir.path().join("10-pools.yaml"), pools).unwrap();
    std::fs::write(dir.path().join("20-rest.yml"), rest).unwrap();
    std::fs::write(dir.path().join(".20-rest.yml.swp"), "garbage: [").unwrap();
    std::fs::write(dir.path().join("README.md"), "not yaml: [").unwrap();
    let c = standalone::load(dir.path()).unwrap();
    assert_eq!((c.ip_pools.len(), c.services.len()), (1, 1));

    std::fs::write(
        dir.path().join("30-bad.yaml"),
        "apiVersion: v1\nkind: Node\n",
    )
    .unwrap();
    let e = standalone::load(dir.path()).unwrap_err();
    assert!(matches!(&e.0[0], ConfigError::Field { at, .. } if at.file.ends_with("30-bad.yaml")));
}

#[test]
fn a_missing_path_is_an_io_error() {
    let e = standalone::load(Path::new("/nonexistent/herald.yaml")).unwrap_err();
    assert!(matches!(e.0[0], ConfigError::Io { .. }));
}

#[test]
fn shipped_examples_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            standalone::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen > 0, "no example directories under {}", dir.display());
}

#[test]
fn advertisements_may_omit_spec_as_in_metallb() {
    let text = "apiVersion: herald.dev/v1alpha1\nkind: BGPAdvertisement\nmetadata: {name: all}\n---\n\
                apiVersion: herald.dev/v1alpha1\nkind: L2Advertisement\nmetadata: {name: lan}\n";
    let c = standalone::load_str(Path::new("lb.yaml"), text).unwrap();
    assert!(c.bgp_advertisements[0].spec.ip_pools.is_empty());
    assert!(c.l2_advertisements[0].spec.interfaces.is_empty());
    // Kinds with required fields still say so.
    let pool = "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {name: p}\n";
    assert!(errors(pool)[0].contains("spec"), "{:?}", errors(pool));
}

//! Herald's BGP speaker against GoBGP 3 and FRR 8: eBGP (over IPv4, carrying IPv6 too) and
//! iBGP (over IPv6, carrying IPv4 too) sessions establish and host routes arrive with the
//! right next hop, origin IGP and AS path.
//!
//! Topology as in `bgp_bird.rs`: speaker 10.0.0.1 / fd00::1, peer 10.0.0.2 / fd00::2.

use std::time::Duration;

use herald_tests::frr::Frr;
use herald_tests::gobgp::{GoBgp, path_attr as attr};
use herald_tests::lab::HeraldLab;
use herald_tests::{Netns, require_privileged, veth_pair, wait_until};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

/// eBGP from AS 64512 to the peer's AS 64513 over IPv4; iBGP in AS 64513 over IPv6.
const LAB_CONFIG: &str = "router-id 192.0.2.1
local-as 64512
peer 10.0.0.2 as 64513
next-hop-v6 fd00::1
local-as 64513
peer fd00::2 as 64513
next-hop-v4 10.0.0.1
route 198.51.100.1/32 local-pref 200
route 2001:db8:100::1/128 local-pref 200";

fn topo(tag: &str) -> (Netns, Netns) {
    let spk = Netns::new(&format!("{tag}-s"));
    let peer = Netns::new(&format!("{tag}-p"));
    veth_pair(
        &spk,
        &["10.0.0.1/24", "fd00::1/64"],
        &peer,
        &["10.0.0.2/24", "fd00::2/64"],
    );
    (spk, peer)
}

const GOBGP_CONFIG: &str = r#"
[global.config]
  as = 64513
  router-id = "10.0.0.2"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.0.0.1"
    peer-as = 64512
  [neighbors.transport.config]
    passive-mode = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "fd00::1"
    peer-as = 64513
  [neighbors.transport.config]
    passive-mode = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#;

/// The GoBGP paths for `prefix` in the global RIB of `family` ("ipv4" / "ipv6").
fn gobgp_paths(g: &GoBgp, family: &str, prefix: &str) -> Result<Vec<Value>, String> {
    let v = g.json(&["global", "rib", "-a", family])?;
    v.get(prefix)
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| v.to_string())
}

fn gobgp_as_path(path: &Value) -> Vec<u64> {
    attr(path, 2)
        .and_then(|a| a.get("as_paths"))
        .and_then(Value::as_array)
        .map(|segs| {
            segs.iter()
                .flat_map(|s| {
                    s.get("asns")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|n| n.as_u64())
                .collect()
        })
        .unwrap_or_default()
}

fn gobgp_next_hop(path: &Value) -> Option<String> {
    // IPv4 unicast: NEXT_HOP (3); IPv6: MP_REACH_NLRI (14).
    attr(path, 3)
        .or_else(|| attr(path, 14))
        .and_then(|a| a.get("nexthop"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[test]
fn gobgp_receives_ebgp_and_ibgp_host_routes_with_next_hop_origin_and_as_path() {
    require_privileged!();
    let (spk, peer) = topo("bgpg1");
    let g = GoBgp::start(&peer, GOBGP_CONFIG);
    let _lab = HeraldLab::start(&spk, LAB_CONFIG);
    // Both sessions deliver each prefix: two paths per prefix, one per neighbor.
    for (family, prefix, nh) in [
        ("ipv4", "198.51.100.1/32", "10.0.0.1"),
        ("ipv6", "2001:db8:100::1/128", "fd00::1"),
    ] {
        let paths = wait_until(
            &format!("{prefix} from both sessions in gobgp"),
            DEADLINE,
            || match gobgp_paths(&g, family, prefix) {
                Ok(p) if p.len() == 2 => Ok(p),
                Ok(p) => Err(format!("{p:?}")),
                Err(e) => Err(e),
            },
        );
        for path in &paths {
            let origin = attr(path, 1)
                .and_then(|a| a.get("value"))
                .and_then(Value::as_u64);
            assert_eq!(origin, Some(0), "origin IGP: {path}");
            assert_eq!(gobgp_next_hop(path).as_deref(), Some(nh), "{path}");
        }
        let mut as_paths: Vec<Vec<u64>> = paths.iter().map(gobgp_as_path).collect();
        as_paths.sort();
        assert_eq!(
            as_paths,
            vec![vec![], vec![64512]],
            "iBGP empty, eBGP own AS"
        );
        let local_prefs: Vec<u64> = paths
            .iter()
            .filter_map(|p| {
                attr(p, 5)
                    .and_then(|a| a.get("value"))
                    .and_then(Value::as_u64)
            })
            .collect();
        assert_eq!(local_prefs, vec![200], "LOCAL_PREF on the iBGP path only");
    }
}

const FRR_CONFIG: &str = "
router bgp 64513
 bgp router-id 10.0.0.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.1 remote-as 64512
 neighbor 10.0.0.1 passive
 neighbor fd00::1 remote-as 64513
 neighbor fd00::1 passive
 address-family ipv4 unicast
  neighbor 10.0.0.1 activate
  neighbor fd00::1 activate
 exit-address-family
 address-family ipv6 unicast
  neighbor 10.0.0.1 activate
  neighbor fd00::1 activate
 exit-address-family
";

fn frr_paths(frr: &Frr, family: &str, prefix: &str) -> Result<Vec<Value>, String> {
    let v = frr.json(&format!("show bgp {family} unicast {prefix} json"))?;
    v.get("paths")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| v.to_string())
}

#[test]
fn frr_receives_ebgp_and_ibgp_host_routes_with_next_hop_origin_and_as_path() {
    require_privileged!();
    let (spk, peer) = topo("bgpf1");
    let frr = Frr::start(&peer, FRR_CONFIG, false);
    let _lab = HeraldLab::start(&spk, LAB_CONFIG);
    for (family, prefix, nh) in [
        ("ipv4", "198.51.100.1/32", "10.0.0.1"),
        ("ipv6", "2001:db8:100::1/128", "fd00::1"),
    ] {
        let paths = wait_until(
            &format!("{prefix} from both sessions in frr"),
            DEADLINE,
            || match frr_paths(&frr, family, prefix) {
                Ok(p) if p.len() == 2 => Ok(p),
                Ok(p) => Err(format!("{p:?}")),
                Err(e) => Err(format!("{e}\n{}", frr.vtysh("show bgp summary"))),
            },
        );
        let mut as_paths = Vec::new();
        for path in &paths {
            assert_eq!(
                path.get("origin").and_then(Value::as_str),
                Some("IGP"),
                "{path}"
            );
            let hops: Vec<&str> = path
                .get("nexthops")
                .and_then(Value::as_array)
                .map(|h| {
                    h.iter()
                        .filter_map(|n| n.get("ip").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            assert!(hops.contains(&nh), "next hop {nh} in {path}");
            // FRR renders an empty AS_PATH as "Local"; its length tells.
            let aspath = path.get("aspath").cloned().unwrap_or(Value::Null);
            let rendered = if aspath.get("length").and_then(Value::as_u64) == Some(0) {
                String::new()
            } else {
                aspath
                    .get("string")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned()
            };
            as_paths.push(rendered);
        }
        as_paths.sort();
        assert_eq!(as_paths, vec!["", "64512"], "iBGP empty, eBGP own AS");
    }
}

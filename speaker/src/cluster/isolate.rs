//! Pure: cluster mode's snapshot, with each object that this node cannot use left out and
//! the rest applied.
//!
//! Standalone mode refuses a whole file for one bad object (the operator edits it and sees
//! the error at once). In a cluster that would let one `BGPPeer` naming a missing
//! `BFDProfile` stop every announcement change on every node, with nothing on the object to
//! say why. So each object is converted on its own; one that fails is left out, named with
//! the field in a [`ObjectError`] (the caller logs it, lists it in `/status` and publishes a
//! Warning Event on the object), and everything else applies:
//!
//! - `BFDProfile` outside the ranges of `herald_api::validate::bfd_profile`;
//! - `BGPPeer` with a bad selector, no router ID to derive on this host, or a `bfdProfile`
//!   that does not exist or is left out (the peer then gets no session: it would wait for
//!   BFD forever);
//! - `BGPAdvertisement` with a bad community or selector;
//! - `L2Advertisement` with a bad selector, or one that selects this node when the speaker
//!   runs without the layer-2 gossip.
//!
//! An object that was valid before and is edited into an invalid one keeps its last valid
//! version in force (a typo in a community must not withdraw every route of the
//! advertisement); one that never was valid on this node is left out. Dependants are not
//! cascaded beyond BFD: an advertisement naming a left-out peer has no session to send to,
//! as with a peer whose nodeSelectors exclude this node.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use herald_api::standalone::StandaloneConfig;
use herald_api::validate::{self, FieldError};
use herald_api::{BFDProfile, BGPAdvertisement, BGPPeer, L2Advertisement};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::announce::from_api::{self, ObjectError};
use crate::engine::Snapshot;
use crate::peers::{self, HostFacts};

fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// An object whose current version this node does not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// The object and the field at fault.
    pub error: ObjectError,
    /// Whether its last valid version is used instead (else it is left out entirely).
    pub kept_previous: bool,
}

impl fmt::Display for LeftOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        if self.kept_previous {
            write!(f, " (its last valid version stays in force)")?;
        }
        Ok(())
    }
}

/// The last valid version of each object, by kind and name: what stays in force while the
/// current version is invalid. Kept by the caller from one snapshot to the next; entries of
/// deleted objects are dropped.
#[derive(Debug, Clone, Default)]
pub struct LastGood {
    bfd_profiles: BTreeMap<String, BFDProfile>,
    bgp_peers: BTreeMap<String, BGPPeer>,
    bgp_advertisements: BTreeMap<String, BGPAdvertisement>,
    l2_advertisements: BTreeMap<String, L2Advertisement>,
}

/// Keeps the objects of `list` that `check` accepts; for each it refuses, its last valid
/// version if that is accepted now, else nothing. Returns the accepted values by name.
fn sift<K: Clone, T>(
    kind: &'static str,
    list: &mut Vec<K>,
    last_good: &mut BTreeMap<String, K>,
    meta: impl Fn(&K) -> &ObjectMeta,
    mut check: impl FnMut(&K) -> Result<T, FieldError>,
    left: &mut Vec<LeftOut>,
) -> Vec<(String, T)> {
    let mut kept = Vec::with_capacity(list.len());
    let mut out = Vec::with_capacity(list.len());
    let mut seen = BTreeSet::new();
    for obj in list.drain(..) {
        let name = name_of(meta(&obj));
        seen.insert(name.clone());
        match check(&obj) {
            Ok(t) => {
                last_good.insert(name.clone(), obj.clone());
                kept.push(obj);
                out.push((name, t));
            }
            Err(error) => {
                let previous = last_good
                    .get(&name)
                    .and_then(|p| Some((p.clone(), check(p).ok()?)));
                let kept_previous = previous.is_some();
                if let Some((p, t)) = previous {
                    kept.push(p);
                    out.push((name.clone(), t));
                }
                left.push(LeftOut {
                    error: ObjectError { kind, name, error },
                    kept_previous,
                });
            }
        }
    }
    last_good.retain(|n, _| seen.contains(n));
    *list = kept;
    out
}

/// The snapshot of `objects` for `node_name`, without the objects it cannot use (or with
/// their last valid version from `last_good`, which is updated), and each such object (in
/// kind order: profiles, peers, BGP, then layer-2 advertisements). `l2_available`: whether
/// this speaker runs the layer-2 gossip.
pub fn snapshot(
    mut objects: StandaloneConfig,
    node_name: &str,
    l2_available: bool,
    host: &HostFacts,
    last_good: &mut LastGood,
) -> (Snapshot, Vec<LeftOut>) {
    let mut left = Vec::new();
    let node_labels = objects
        .nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(node_name))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default();

    sift(
        "BFDProfile",
        &mut objects.bfd_profiles,
        &mut last_good.bfd_profiles,
        |b| &b.metadata,
        |b| match validate::bfd_profile(&b.spec).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        },
        &mut left,
    );
    let bad_profiles: BTreeMap<String, String> = left
        .iter()
        .filter(|l| !l.kept_previous)
        .map(|l| (l.error.name.clone(), l.error.error.to_string()))
        .collect();

    let profiles = &objects.bfd_profiles;
    let peers = sift(
        "BGPPeer",
        &mut objects.bgp_peers,
        &mut last_good.bgp_peers,
        |p| &p.metadata,
        |p| {
            from_api::peer(p).map_err(|e| e.error)?;
            peers::wanted_one(p, profiles, &node_labels, host).map_err(|mut error| {
                let bad = p
                    .spec
                    .bfd_profile
                    .as_ref()
                    .and_then(|b| Some((b, bad_profiles.get(b)?)));
                if let (Some((profile, why)), "spec.bfdProfile") = (bad, error.field.as_str()) {
                    error.message = format!("BFDProfile {profile:?} is left out ({why})");
                }
                error
            })
        },
        &mut left,
    )
    .into_iter()
    .filter_map(|(name, w)| Some((name, w?)))
    .collect();

    sift(
        "BGPAdvertisement",
        &mut objects.bgp_advertisements,
        &mut last_good.bgp_advertisements,
        |a| &a.metadata,
        |a| {
            from_api::bgp_advertisement(a)
                .map(|_| ())
                .map_err(|e| e.error)
        },
        &mut left,
    );
    sift(
        "L2Advertisement",
        &mut objects.l2_advertisements,
        &mut last_good.l2_advertisements,
        |a| &a.metadata,
        |a| {
            let adv = from_api::l2_advertisement(a).map_err(|e| e.error)?;
            let selectors = &adv.scope.node_selectors;
            let selects = selectors.is_empty() || selectors.iter().any(|s| s.matches(&node_labels));
            if selects && !l2_available {
                return Err(FieldError::new(
                    "spec.nodeSelectors",
                    "selects this node, and layer-2 mode needs the gossip among speakers: \
                     start herald-speaker with --gossip-bind and --gossip-key-file (chart: \
                     speaker.gossip.keySecret)",
                ));
            }
            Ok(())
        },
        &mut left,
    );

    // Everything kept converts (checked above); errors, if any, are reported regardless.
    let (announce, rest) = from_api::config_partial(
        &objects.ip_pools,
        &objects.bgp_peers,
        &objects.bgp_advertisements,
        &objects.l2_advertisements,
    );
    left.extend(rest.into_iter().map(|error| LeftOut {
        error,
        kept_previous: false,
    }));
    let snapshot = Snapshot {
        objects,
        announce,
        peers,
        node_labels,
    };
    (snapshot, left)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use serde_json::{Value, json};

    use super::*;

    fn object<K: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: Value) -> K {
        serde_json::from_value(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": kind,
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap()
    }

    fn peer(name: &str, extra: Value) -> BGPPeer {
        let mut spec = json!({"peerAddress": "192.0.2.1", "peerASN": 65001, "myASN": 65000});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        object("BGPPeer", name, spec)
    }

    fn host() -> HostFacts {
        HostFacts {
            router_id: Some(Ipv4Addr::new(192, 0, 2, 10)),
            ..Default::default()
        }
    }

    fn run(objects: StandaloneConfig, l2: bool, last: &mut LastGood) -> (Snapshot, Vec<String>) {
        let (s, left) = snapshot(objects, "n1", l2, &host(), last);
        (s, left.iter().map(ToString::to_string).collect())
    }

    fn names<T>(list: &[T], meta: impl Fn(&T) -> &ObjectMeta) -> Vec<String> {
        list.iter().map(|o| name_of(meta(o))).collect()
    }

    #[test]
    fn each_bad_object_is_left_out_naming_its_field_and_the_rest_applies() {
        // (objects, what is left out)
        let table: Vec<(StandaloneConfig, Vec<&str>)> = vec![
            (
                StandaloneConfig {
                    bgp_peers: vec![
                        peer("tor", json!({"bfdProfile": "fast"})),
                        peer("ok", json!({})),
                    ],
                    ..Default::default()
                },
                vec![r#"BGPPeer "tor": spec.bfdProfile: no BFDProfile named "fast""#],
            ),
            (
                StandaloneConfig {
                    bgp_peers: vec![
                        peer(
                            "sel",
                            json!({"nodeSelectors": [{"matchExpressions":
                                [{"key": "a", "operator": "Near", "values": ["x"]}]}]}),
                        ),
                        peer("ok", json!({})),
                    ],
                    ..Default::default()
                },
                vec![
                    "BGPPeer \"sel\": spec.nodeSelectors[0].matchExpressions[0].operator: \
                     unknown operator \"Near\"",
                ],
            ),
            (
                StandaloneConfig {
                    bgp_peers: vec![peer("ok", json!({}))],
                    bgp_advertisements: vec![
                        object("BGPAdvertisement", "bad", json!({"communities": ["x"]})),
                        object("BGPAdvertisement", "good", json!({"communities": ["1:2"]})),
                    ],
                    ..Default::default()
                },
                vec!["BGPAdvertisement \"bad\": spec.communities[0]"],
            ),
            (
                StandaloneConfig {
                    bgp_peers: vec![peer("ok", json!({}))],
                    bfd_profiles: vec![object(
                        "BFDProfile",
                        "slow",
                        json!({"detectMultiplier": 1}),
                    )],
                    ..Default::default()
                },
                vec!["BFDProfile \"slow\": spec.detectMultiplier: 1 is outside 2-255"],
            ),
        ];
        for (objects, want) in table {
            let (s, left) = run(objects, false, &mut LastGood::default());
            assert_eq!(left.len(), want.len(), "{left:?}");
            for (l, w) in left.iter().zip(&want) {
                assert!(l.starts_with(w), "{l:?} does not start with {w:?}");
            }
            assert!(s.peers.contains_key("ok"), "the good peer runs: {left:?}");
            assert_eq!(s.objects.bgp_peers.len(), s.announce.peers.len());
            assert!(!names(&s.objects.bgp_advertisements, |a| &a.metadata).contains(&"bad".into()));
        }
    }

    #[test]
    fn a_peer_whose_router_id_cannot_be_derived_is_left_out_alone() {
        let objects = StandaloneConfig {
            bgp_peers: vec![
                peer("v6", json!({"peerAddress": "2001:db8::1"})),
                peer(
                    "given",
                    json!({"peerAddress": "2001:db8::2", "routerID": "192.0.2.9"}),
                ),
            ],
            ..Default::default()
        };
        let (s, left) = snapshot(
            objects,
            "n1",
            false,
            &HostFacts::default(),
            &mut LastGood::default(),
        );
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].error.name, "v6");
        assert_eq!(left[0].error.error.field, "spec.routerID");
        assert_eq!(s.peers.keys().collect::<Vec<_>>(), ["given"]);
    }

    #[test]
    fn a_peer_naming_an_invalid_profile_says_why_the_profile_is_left_out() {
        let objects = StandaloneConfig {
            bgp_peers: vec![peer("tor", json!({"bfdProfile": "slow"}))],
            bfd_profiles: vec![object("BFDProfile", "slow", json!({"detectMultiplier": 1}))],
            ..Default::default()
        };
        let (s, left) = run(objects, false, &mut LastGood::default());
        assert_eq!(
            left[1],
            "BGPPeer \"tor\": spec.bfdProfile: BFDProfile \"slow\" is left out \
             (spec.detectMultiplier: 1 is outside 2-255)"
        );
        assert!(s.peers.is_empty());
    }

    #[test]
    fn layer_2_without_gossip_leaves_out_only_advertisements_that_select_this_node() {
        let objects = || StandaloneConfig {
            l2_advertisements: vec![
                object("L2Advertisement", "here", json!({})),
                object(
                    "L2Advertisement",
                    "elsewhere",
                    json!({"nodeSelectors": [{"matchLabels": {"rack": "b"}}]}),
                ),
            ],
            ..Default::default()
        };
        let (s, left) = run(objects(), false, &mut LastGood::default());
        assert_eq!(left.len(), 1);
        assert!(
            left[0].starts_with("L2Advertisement \"here\": spec.nodeSelectors: selects this node")
        );
        assert_eq!(
            names(&s.objects.l2_advertisements, |a| &a.metadata),
            ["elsewhere"]
        );
        let (s, left) = run(objects(), true, &mut LastGood::default());
        assert!(left.is_empty());
        assert_eq!(s.announce.l2_advertisements.len(), 2);
    }

    #[test]
    fn an_object_edited_into_an_invalid_one_keeps_its_last_valid_version_until_deleted() {
        let mut last = LastGood::default();
        let adv = |c: &str| {
            object::<BGPAdvertisement>("BGPAdvertisement", "adv", json!({"communities": [c]}))
        };
        let with = |a: Vec<BGPAdvertisement>| StandaloneConfig {
            bgp_advertisements: a,
            ..Default::default()
        };
        let (s, left) = run(with(vec![adv("65000:1")]), false, &mut last);
        assert!(left.is_empty());
        assert_eq!(
            s.announce.bgp_advertisements[0].communities,
            [65000 << 16 | 1]
        );

        let (s, left) = run(with(vec![adv("banana")]), false, &mut last);
        assert_eq!(left.len(), 1);
        assert!(
            left[0].ends_with("(its last valid version stays in force)"),
            "{}",
            left[0]
        );
        assert_eq!(
            s.announce.bgp_advertisements[0].communities,
            [65000 << 16 | 1]
        );
        assert_eq!(
            s.objects.bgp_advertisements[0].spec.communities,
            ["65000:1"]
        );

        // Deleted: forgotten, so a new invalid object of that name is left out entirely.
        let (s, _) = run(with(vec![]), false, &mut last);
        assert!(s.announce.bgp_advertisements.is_empty());
        let (s, left) = run(with(vec![adv("banana")]), false, &mut last);
        assert!(!left[0].contains("stays in force"), "{}", left[0]);
        assert!(s.announce.bgp_advertisements.is_empty());
    }

    #[test]
    fn an_edit_that_breaks_a_peer_keeps_its_session_configuration() {
        let mut last = LastGood::default();
        let with = |p: BGPPeer| StandaloneConfig {
            bgp_peers: vec![p],
            ..Default::default()
        };
        let (before, _) = run(with(peer("tor", json!({}))), false, &mut last);
        let (after, left) = run(
            with(peer("tor", json!({"bfdProfile": "gone"}))),
            false,
            &mut last,
        );
        assert_eq!(left.len(), 1);
        assert!(left[0].contains("spec.bfdProfile") && left[0].contains("\"gone\""));
        assert_eq!(after.peers, before.peers);
    }
}

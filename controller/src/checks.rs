//! Pure: the checks across Herald's configuration objects, as the `Valid` condition of each
//! `BGPPeer`, `BGPAdvertisement`, `L2Advertisement` and `BFDProfile`, and which `IPPool`s
//! overlap an earlier one. No client: [`crate::objects`] reads the caches and writes.
//!
//! - References: `BGPPeer.spec.bfdProfile`, `BGPAdvertisement.spec.ipPools` / `.peers`,
//!   `L2Advertisement.spec.ipPools` must name existing objects (reason `MissingReference`).
//!   An object that exists counts even when it is itself invalid: it has its own condition.
//! - Fields the schema cannot check on 1.27 ([`herald_api::validate`]): reason `Invalid`.
//! - Pools sharing an address: the pool that came later (`creationTimestamp`, then name) is
//!   not valid (its `Ready` condition, reason `Overlapping`) and hands out nothing, so an
//!   address is never granted by two pools with two sets of rules.
//!
//! The message names the field and the other object:
//! `spec.bfdProfile: no BFDProfile "fast"`.

use std::collections::BTreeMap;

use herald_api::status::{ObjectStatus, VALID};
use herald_api::validate::{self, Finding, Names};
use herald_api::{BFDProfile, BGPAdvertisement, BGPPeer, IPPool, L2Advertisement};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

/// Whether an object is usable as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every field and every object it names are usable.
    Valid,
    /// Not usable as written.
    Invalid {
        /// `MissingReference` or `Invalid`.
        reason: &'static str,
        /// Every problem, `; `-separated, each naming the field.
        message: String,
    },
}

/// The objects checked, as the caches hold them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Objects<'a> {
    /// Every `IPPool` (any order).
    pub pools: &'a [&'a IPPool],
    /// Every `BGPPeer`.
    pub peers: &'a [&'a BGPPeer],
    /// Every `BGPAdvertisement`.
    pub bgp_advertisements: &'a [&'a BGPAdvertisement],
    /// Every `L2Advertisement`.
    pub l2_advertisements: &'a [&'a L2Advertisement],
    /// Every `BFDProfile`.
    pub bfd_profiles: &'a [&'a BFDProfile],
}

fn name(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// `pools` in precedence order: oldest `creationTimestamp` first (none: last), then name.
pub fn precedence<'a>(pools: &[&'a IPPool]) -> Vec<&'a IPPool> {
    let mut sorted = pools.to_vec();
    sorted.sort_by(|a, b| {
        let key = |p: &IPPool| {
            (
                p.metadata.creation_timestamp.is_none(),
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    sorted
}

/// The pools that overlap an earlier one (see [`precedence`]), with the message for their
/// `Ready` condition.
pub fn overlapping_pools(pools: &[&IPPool]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in validate::pool_overlaps(&precedence(pools)) {
        out.entry(f.name).or_default().push(f.error.to_string());
    }
    out.into_iter()
        .map(|(pool, problems)| {
            let message = format!(
                "{}: a later pool may not share addresses; it hands out none until the overlap is removed",
                problems.join("; ")
            );
            (pool, message)
        })
        .collect()
}

/// The verdict on every peer, advertisement and profile, by (kind, name).
pub fn verdicts(objects: &Objects<'_>) -> BTreeMap<(&'static str, String), Verdict> {
    let names = Names {
        pools: objects.pools.iter().map(|p| name(&p.metadata)).collect(),
        peers: objects.peers.iter().map(|p| name(&p.metadata)).collect(),
        profiles: objects
            .bfd_profiles
            .iter()
            .map(|p| name(&p.metadata))
            .collect(),
    };
    let mut found: BTreeMap<(&'static str, String), Vec<Finding>> = BTreeMap::new();
    for f in validate::missing_references(
        objects.peers,
        objects.bgp_advertisements,
        objects.l2_advertisements,
        &names,
    ) {
        found.entry((f.kind, f.name.clone())).or_default().push(f);
    }
    let mut field_errors =
        |kind: &'static str, meta: &ObjectMeta, errors: Vec<validate::FieldError>| {
            let entry = found.entry((kind, name(meta))).or_default();
            entry.extend(errors.into_iter().map(|error| Finding {
                kind,
                name: name(meta),
                error,
                missing_reference: false,
            }));
        };
    for p in objects.peers {
        field_errors("BGPPeer", &p.metadata, validate::bgp_peer(&p.spec));
    }
    for a in objects.bgp_advertisements {
        field_errors(
            "BGPAdvertisement",
            &a.metadata,
            validate::bgp_advertisement(&a.spec),
        );
    }
    for a in objects.l2_advertisements {
        field_errors(
            "L2Advertisement",
            &a.metadata,
            validate::l2_advertisement(&a.spec),
        );
    }
    for b in objects.bfd_profiles {
        field_errors("BFDProfile", &b.metadata, validate::bfd_profile(&b.spec));
    }
    found
        .into_iter()
        .map(|(key, findings)| {
            let verdict = match findings.first() {
                None => Verdict::Valid,
                Some(first) => Verdict::Invalid {
                    reason: if first.missing_reference {
                        "MissingReference"
                    } else {
                        "Invalid"
                    },
                    message: findings
                        .iter()
                        .map(|f| f.error.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                },
            };
            (key, verdict)
        })
        .collect()
}

/// The status for `verdict`: one `Valid` condition that keeps its `lastTransitionTime`
/// from `previous` while its status is unchanged.
pub fn object_status(
    verdict: &Verdict,
    generation: Option<i64>,
    previous: Option<&ObjectStatus>,
    now: Timestamp,
) -> ObjectStatus {
    let (status, reason, message) = match verdict {
        Verdict::Valid => (
            "True",
            "Valid",
            "every field and every object it names are usable".to_owned(),
        ),
        Verdict::Invalid { reason, message } => ("False", *reason, message.clone()),
    };
    let since = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == VALID))
        .filter(|c| c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    ObjectStatus {
        conditions: vec![Condition {
            type_: VALID.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: since,
        }],
    }
}

/// Whether two statuses say the same, ignoring transition times.
pub fn same_status(a: &ObjectStatus, b: &ObjectStatus) -> bool {
    let strip = |s: &ObjectStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(a) == strip(b)
}

/// An Event to publish for a condition change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Warning (became or stays invalid for a new reason) or Normal (valid again).
    pub warning: bool,
    /// The condition's reason (`MissingReference`, `Invalid`, `Overlapping`, `Valid`).
    pub reason: String,
    /// The condition's message.
    pub note: String,
}

/// The Event for a condition of type `type_` going from `previous` to `next`: a Warning
/// when it turns `False` or its `False` message changes, a Normal one when it turns `True`
/// again; nothing when it says the same, or for a first `True`.
pub fn transition(type_: &str, previous: &[Condition], next: &[Condition]) -> Option<Transition> {
    let before = previous.iter().find(|c| c.type_ == type_);
    let after = next.iter().find(|c| c.type_ == type_)?;
    let changed = before.is_none_or(|b| b.status != after.status || b.message != after.message);
    if !changed {
        return None;
    }
    match after.status.as_str() {
        "False" => Some(Transition {
            warning: true,
            reason: after.reason.clone(),
            note: after.message.clone(),
        }),
        "True" if before.is_some_and(|b| b.status == "False") => Some(Transition {
            warning: false,
            reason: after.reason.clone(),
            note: after.message.clone(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn object<K: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: Value) -> K {
        serde_json::from_value(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": kind,
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap()
    }

    fn pool(name: &str, created: Option<&str>, addresses: &[&str]) -> IPPool {
        let mut p: IPPool = object("IPPool", name, json!({"addresses": addresses}));
        p.metadata.creation_timestamp = created
            .map(|t| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t.parse().unwrap()));
        p
    }

    fn peer(name: &str, extra: Value) -> BGPPeer {
        let mut spec = json!({"peerAddress": "192.0.2.1", "peerASN": 65001, "myASN": 65000});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        object("BGPPeer", name, spec)
    }

    #[test]
    fn the_later_pool_by_creation_time_then_name_is_the_overlapping_one() {
        // (pools, the pools reported as overlapping)
        let table: Vec<(Vec<IPPool>, Vec<&str>)> = vec![
            (
                vec![
                    pool("a", Some("2026-01-02T00:00:00Z"), &["10.0.0.0/24"]),
                    pool("z", Some("2026-01-01T00:00:00Z"), &["10.0.0.0/25"]),
                ],
                vec!["a"],
            ),
            (
                vec![
                    pool("b", Some("2026-01-01T00:00:00Z"), &["10.0.0.0/24"]),
                    pool("a", Some("2026-01-01T00:00:00Z"), &["10.0.0.7"]),
                ],
                vec!["b"],
            ),
            (
                vec![
                    pool("a", None, &["10.0.0.7"]),
                    pool("b", Some("2026-01-01T00:00:00Z"), &["10.0.0.0/24"]),
                ],
                vec!["a"],
            ),
            (
                vec![
                    pool("a", None, &["10.0.0.0/24"]),
                    pool("b", None, &["10.0.1.0/24", "2001:db8::/64"]),
                ],
                vec![],
            ),
        ];
        for (pools, want) in table {
            let refs: Vec<&IPPool> = pools.iter().collect();
            let got = overlapping_pools(&refs);
            assert_eq!(got.keys().map(String::as_str).collect::<Vec<_>>(), want);
        }
        let pools = [
            pool("early", Some("2026-01-01T00:00:00Z"), &["10.0.0.0/24"]),
            pool(
                "late",
                Some("2026-01-02T00:00:00Z"),
                &["10.1.0.0/24", "10.0.0.9"],
            ),
        ];
        let got = overlapping_pools(&pools.iter().collect::<Vec<_>>());
        assert!(
            got["late"].starts_with("spec.addresses[1]: overlaps IPPool \"early\""),
            "{got:?}"
        );
    }

    #[test]
    fn every_object_gets_a_verdict_naming_the_field_and_the_other_object() {
        let pools = [pool("a", None, &["10.0.0.0/24"])];
        let peers = [
            peer("tor", json!({"bfdProfile": "fast"})),
            peer("plain", json!({})),
            peer("bad", json!({"peerASN": 0, "bfdProfile": "gone"})),
        ];
        let bgp: [BGPAdvertisement; 2] = [
            object(
                "BGPAdvertisement",
                "adv",
                json!({"ipPools": ["a", "b"], "peers": ["tor", "x"]}),
            ),
            object(
                "BGPAdvertisement",
                "ok",
                json!({"ipPools": ["a"], "peers": ["bad"]}),
            ),
        ];
        let l2: [L2Advertisement; 1] =
            [object("L2Advertisement", "lan", json!({"ipPools": ["b"]}))];
        let profiles: [BFDProfile; 1] =
            [object("BFDProfile", "slow", json!({"detectMultiplier": 1}))];
        let (p, pe, b, l, pr) = (
            pools.iter().collect::<Vec<_>>(),
            peers.iter().collect::<Vec<_>>(),
            bgp.iter().collect::<Vec<_>>(),
            l2.iter().collect::<Vec<_>>(),
            profiles.iter().collect::<Vec<_>>(),
        );
        let got = verdicts(&Objects {
            pools: &p,
            peers: &pe,
            bgp_advertisements: &b,
            l2_advertisements: &l,
            bfd_profiles: &pr,
        });
        let invalid = |reason: &'static str, message: &str| Verdict::Invalid {
            reason,
            message: message.to_owned(),
        };
        let want: Vec<((&str, &str), Verdict)> = vec![
            (
                ("BFDProfile", "slow"),
                invalid("Invalid", "spec.detectMultiplier: 1 is outside 2-255"),
            ),
            (
                ("BGPAdvertisement", "adv"),
                invalid(
                    "MissingReference",
                    "spec.ipPools[1]: no IPPool \"b\"; spec.peers[1]: no BGPPeer \"x\"",
                ),
            ),
            // Naming an invalid peer is not a missing reference: the peer has its own.
            (("BGPAdvertisement", "ok"), Verdict::Valid),
            (
                ("BGPPeer", "bad"),
                invalid(
                    "MissingReference",
                    "spec.bfdProfile: no BFDProfile \"gone\"; spec.peerASN: AS 0 is reserved (RFC 7607)",
                ),
            ),
            (("BGPPeer", "plain"), Verdict::Valid),
            (
                ("BGPPeer", "tor"),
                invalid(
                    "MissingReference",
                    "spec.bfdProfile: no BFDProfile \"fast\"",
                ),
            ),
            (
                ("L2Advertisement", "lan"),
                invalid("MissingReference", "spec.ipPools[0]: no IPPool \"b\""),
            ),
        ];
        let got: Vec<((&str, &str), Verdict)> = got
            .iter()
            .map(|((k, n), v)| ((*k, n.as_str()), v.clone()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_condition_keeps_its_transition_time_and_events_follow_transitions_only() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let bad = |m: &str| Verdict::Invalid {
            reason: "MissingReference",
            message: m.to_owned(),
        };
        let first = object_status(&Verdict::Valid, Some(1), None, t0);
        // A first True: no Event.
        assert_eq!(transition(VALID, &[], &first.conditions), None);
        let broken = object_status(&bad("x"), Some(2), Some(&first), t1);
        assert_eq!(broken.conditions[0].last_transition_time.0, t1);
        let t = transition(VALID, &first.conditions, &broken.conditions).unwrap();
        assert!(t.warning);
        assert_eq!(
            (t.reason.as_str(), t.note.as_str()),
            ("MissingReference", "x")
        );
        // The same again: same status, same time, no write, no Event.
        let again = object_status(
            &bad("x"),
            Some(2),
            Some(&broken),
            t1 + std::time::Duration::from_secs(5),
        );
        assert!(same_status(&again, &broken));
        assert_eq!(again.conditions[0].last_transition_time.0, t1);
        assert_eq!(
            transition(VALID, &broken.conditions, &again.conditions),
            None
        );
        // Another reason: a new Warning, the time kept (still False).
        let other = object_status(&bad("y"), Some(2), Some(&broken), t1);
        assert!(
            transition(VALID, &broken.conditions, &other.conditions)
                .unwrap()
                .warning
        );
        // Fixed: one Normal Event.
        let fixed = object_status(&Verdict::Valid, Some(3), Some(&other), t1);
        let t = transition(VALID, &other.conditions, &fixed.conditions).unwrap();
        assert!(!t.warning);
        assert_eq!(t.reason, "Valid");
    }
}

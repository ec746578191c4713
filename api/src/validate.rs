//! Checks that the CRD schema cannot make (or cannot make on API servers as old as 1.27),
//! run by the standalone loader on every object and by the controller before using one.
//!
//! Every error names the field (`spec.addresses[2]`) so that the caller can prefix the file,
//! document and object.

use std::fmt;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::addresses::AddressRange;
use crate::{BFDProfileSpec, BGPAdvertisementSpec, BGPPeerSpec, IPPoolSpec, L2AdvertisementSpec};

/// A problem with one field of an object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    /// Path of the field, as in `kubectl explain` (`spec.addresses[2]`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The pool's address ranges, or every entry that is wrong (bad syntax, host bits, reversed
/// range, overlap with another entry).
pub fn pool_ranges(spec: &IPPoolSpec) -> Result<Vec<AddressRange>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut ranges: Vec<(usize, AddressRange)> = Vec::new();
    if spec.addresses.is_empty() {
        errors.push(FieldError::new(
            "spec.addresses",
            "must list at least one address",
        ));
    }
    for (i, entry) in spec.addresses.iter().enumerate() {
        let field = format!("spec.addresses[{i}]");
        match entry.parse::<AddressRange>() {
            Ok(range) => {
                if let Some((j, _)) = ranges.iter().find(|(_, r)| r.overlaps(&range)) {
                    errors.push(FieldError::new(
                        field,
                        format!("overlaps spec.addresses[{j}]"),
                    ));
                } else {
                    ranges.push((i, range));
                }
            }
            Err(e) => errors.push(FieldError::new(field, e.to_string())),
        }
    }
    if errors.is_empty() {
        Ok(ranges.into_iter().map(|(_, r)| r).collect())
    } else {
        Err(errors)
    }
}

/// Checks an `IPPool` spec.
pub fn ip_pool(spec: &IPPoolSpec) -> Vec<FieldError> {
    let mut errors = pool_ranges(spec).err().unwrap_or_default();
    if let Some(to) = &spec.allocate_to {
        for (i, s) in to.namespace_selectors.iter().enumerate() {
            errors.extend(label_selector(
                s,
                &format!("spec.allocateTo.namespaceSelectors[{i}]"),
            ));
        }
        for (i, s) in to.service_selectors.iter().enumerate() {
            errors.extend(label_selector(
                s,
                &format!("spec.allocateTo.serviceSelectors[{i}]"),
            ));
        }
    }
    errors
}

/// Checks a `BGPPeer` spec.
pub fn bgp_peer(spec: &BGPPeerSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if spec.peer_asn == 0 {
        errors.push(FieldError::new(
            "spec.peerASN",
            "AS 0 is reserved (RFC 7607)",
        ));
    }
    if spec.my_asn == 0 {
        errors.push(FieldError::new("spec.myASN", "AS 0 is reserved (RFC 7607)"));
    }
    if spec.peer_port == Some(0) {
        errors.push(FieldError::new("spec.peerPort", "must be 1-65535"));
    }
    if let Some(src) = spec.source_address
        && src.is_ipv4() != spec.peer_address.is_ipv4()
    {
        errors.push(FieldError::new(
            "spec.sourceAddress",
            "must be of the peer address's family",
        ));
    }
    if spec.router_id.is_some_and(|id| id.is_unspecified()) {
        errors.push(FieldError::new(
            "spec.routerID",
            "0.0.0.0 is not a valid BGP identifier",
        ));
    }
    let hold = spec.hold_time.as_ref().map(|d| d.get());
    if let Some(h) = hold
        && !h.is_zero()
        && h < Duration::from_secs(3)
    {
        errors.push(FieldError::new(
            "spec.holdTime",
            "must be 0s (no keepalives) or at least 3s (RFC 4271 §4.2)",
        ));
    }
    if let Some(k) = spec.keepalive_time.as_ref().map(|d| d.get()) {
        let hold = hold.unwrap_or(Duration::from_secs(crate::bgp::DEFAULT_HOLD_TIME_SECS));
        if !hold.is_zero() && k >= hold {
            errors.push(FieldError::new(
                "spec.keepaliveTime",
                "must be shorter than holdTime (default 90s)",
            ));
        }
    }
    if spec.password.is_some() && spec.password_secret.is_some() {
        errors.push(FieldError::new(
            "spec.password",
            "password and passwordSecret are mutually exclusive",
        ));
    }
    if spec.password.as_ref().is_some_and(|p| p.len() > 80) {
        errors.push(FieldError::new(
            "spec.password",
            "TCP MD5 keys are at most 80 bytes",
        ));
    }
    for (i, s) in spec.node_selectors.iter().enumerate() {
        errors.extend(label_selector(s, &format!("spec.nodeSelectors[{i}]")));
    }
    errors
}

/// Checks a `BGPAdvertisement` spec.
pub fn bgp_advertisement(spec: &BGPAdvertisementSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, c) in spec.communities.iter().enumerate() {
        if let Err(e) = crate::bgp::parse_community(c) {
            errors.push(FieldError::new(format!("spec.communities[{i}]"), e));
        }
    }
    for (i, c) in spec.large_communities.iter().enumerate() {
        if let Err(e) = crate::bgp::parse_large_community(c) {
            errors.push(FieldError::new(format!("spec.largeCommunities[{i}]"), e));
        }
    }
    if spec.aggregation_length.is_some_and(|l| l > 32) {
        errors.push(FieldError::new("spec.aggregationLength", "must be 0-32"));
    }
    if spec.aggregation_length_v6.is_some_and(|l| l > 128) {
        errors.push(FieldError::new("spec.aggregationLengthV6", "must be 0-128"));
    }
    for (i, s) in spec.ip_pool_selectors.iter().enumerate() {
        errors.extend(label_selector(s, &format!("spec.ipPoolSelectors[{i}]")));
    }
    for (i, s) in spec.node_selectors.iter().enumerate() {
        errors.extend(label_selector(s, &format!("spec.nodeSelectors[{i}]")));
    }
    errors
}

/// Checks an `L2Advertisement` spec.
pub fn l2_advertisement(spec: &L2AdvertisementSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, name) in spec.interfaces.iter().enumerate() {
        // Linux IFNAMSIZ is 16 including the NUL; '/' and whitespace are never valid.
        if name.is_empty()
            || name.len() > 15
            || name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
        {
            errors.push(FieldError::new(
                format!("spec.interfaces[{i}]"),
                format!("{name:?} is not a Linux interface name"),
            ));
        }
    }
    for (i, s) in spec.ip_pool_selectors.iter().enumerate() {
        errors.extend(label_selector(s, &format!("spec.ipPoolSelectors[{i}]")));
    }
    for (i, s) in spec.node_selectors.iter().enumerate() {
        errors.extend(label_selector(s, &format!("spec.nodeSelectors[{i}]")));
    }
    errors
}

/// Checks a `BFDProfile` spec.
pub fn bfd_profile(spec: &BFDProfileSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut range = |field: &str, v: Option<u32>, lo: u32, hi: u32| {
        if let Some(v) = v
            && !(lo..=hi).contains(&v)
        {
            errors.push(FieldError::new(field, format!("{v} is outside {lo}-{hi}")));
        }
    };
    range("spec.receiveInterval", spec.receive_interval, 10, 60000);
    range("spec.transmitInterval", spec.transmit_interval, 10, 60000);
    range("spec.detectMultiplier", spec.detect_multiplier, 2, 255);
    range("spec.minimumTtl", spec.minimum_ttl, 1, 254);
    errors
}

/// A problem of one object found by a check across objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The object's kind (`IPPool`, `BGPPeer`, ...).
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// The field, and the other object in the message.
    pub error: FieldError,
    /// Whether it is a reference to an object that does not exist (else a clash with one
    /// that does, such as overlapping pools).
    pub missing_reference: bool,
}

/// Pools that share an address with an earlier pool: two pools must not, or one address
/// would have two sets of rules. `pools` in precedence order (the controller: oldest
/// `creationTimestamp` first, then name; standalone: file order); each overlap is reported
/// on the later pool, at its entry, naming the earlier pool. Pools with invalid entries
/// take part with their valid ones.
pub fn pool_overlaps(pools: &[&crate::IPPool]) -> Vec<Finding> {
    let name = |p: &crate::IPPool| p.metadata.name.clone().unwrap_or_default();
    let mut earlier: Vec<(String, AddressRange)> = Vec::new();
    let mut found = Vec::new();
    for pool in pools {
        let mut own = Vec::new();
        for (i, entry) in pool.spec.addresses.iter().enumerate() {
            let Ok(range) = entry.parse::<AddressRange>() else {
                continue;
            };
            if let Some((other, _)) = earlier.iter().find(|(_, r)| r.overlaps(&range)) {
                found.push(Finding {
                    kind: "IPPool",
                    name: name(pool),
                    error: FieldError::new(
                        format!("spec.addresses[{i}]"),
                        format!("overlaps IPPool {other:?}"),
                    ),
                    missing_reference: false,
                });
            }
            own.push((name(pool), range));
        }
        earlier.extend(own);
    }
    found
}

/// The names that references may point at. Callers decide what counts as present (the
/// standalone loader counts objects that failed to parse, so that one bad object does not
/// also make every reference to it an error).
#[derive(Clone, Debug, Default)]
pub struct Names {
    /// `IPPool` names.
    pub pools: std::collections::BTreeSet<String>,
    /// `BGPPeer` names.
    pub peers: std::collections::BTreeSet<String>,
    /// `BFDProfile` names.
    pub profiles: std::collections::BTreeSet<String>,
}

/// References to objects that do not exist: `BGPPeer.spec.bfdProfile`,
/// `BGPAdvertisement.spec.ipPools[i]` and `.peers[i]`, `L2Advertisement.spec.ipPools[i]`.
/// In input order: peers, then BGP, then layer-2 advertisements.
pub fn missing_references(
    peers: &[&crate::BGPPeer],
    bgp_advertisements: &[&crate::BGPAdvertisement],
    l2_advertisements: &[&crate::L2Advertisement],
    names: &Names,
) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut missing =
        |kind: &'static str, name: &Option<String>, field: String, message: String| {
            found.push(Finding {
                kind,
                name: name.clone().unwrap_or_default(),
                error: FieldError::new(field, message),
                missing_reference: true,
            });
        };
    for peer in peers {
        if let Some(p) = &peer.spec.bfd_profile
            && !names.profiles.contains(p)
        {
            missing(
                "BGPPeer",
                &peer.metadata.name,
                "spec.bfdProfile".to_owned(),
                format!("no BFDProfile {p:?}"),
            );
        }
    }
    for adv in bgp_advertisements {
        for (i, p) in adv.spec.ip_pools.iter().enumerate() {
            if !names.pools.contains(p) {
                missing(
                    "BGPAdvertisement",
                    &adv.metadata.name,
                    format!("spec.ipPools[{i}]"),
                    format!("no IPPool {p:?}"),
                );
            }
        }
        for (i, p) in adv.spec.peers.iter().enumerate() {
            if !names.peers.contains(p) {
                missing(
                    "BGPAdvertisement",
                    &adv.metadata.name,
                    format!("spec.peers[{i}]"),
                    format!("no BGPPeer {p:?}"),
                );
            }
        }
    }
    for adv in l2_advertisements {
        for (i, p) in adv.spec.ip_pools.iter().enumerate() {
            if !names.pools.contains(p) {
                missing(
                    "L2Advertisement",
                    &adv.metadata.name,
                    format!("spec.ipPools[{i}]"),
                    format!("no IPPool {p:?}"),
                );
            }
        }
    }
    found
}

/// Checks a label selector's operators and values (Kubernetes semantics).
pub fn label_selector(selector: &LabelSelector, field: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let f = format!("{field}.matchExpressions[{i}]");
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errors.push(FieldError::new(
                format!("{f}.values"),
                "In and NotIn need values",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errors.push(FieldError::new(
                format!("{f}.values"),
                "Exists and DoesNotExist take no values",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.push(FieldError::new(
                format!("{f}.operator"),
                format!("{other:?} is not In, NotIn, Exists or DoesNotExist"),
            )),
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(yaml: &str) -> BGPPeerSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn pool_entries_are_checked_one_by_one() {
        let spec = IPPoolSpec {
            addresses: vec![
                "192.0.2.0/24".into(),
                "192.0.2.128/25".into(),
                "2001:db8::1/64".into(),
                "2001:db8:1::9-2001:db8:1::1".into(),
            ],
            ..Default::default()
        };
        let errors = pool_ranges(&spec).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.addresses[1]",
                "spec.addresses[2]",
                "spec.addresses[3]"
            ]
        );
        assert_eq!(errors[0].message, "overlaps spec.addresses[0]");
    }

    #[test]
    fn empty_pool_is_refused() {
        assert_eq!(ip_pool(&IPPoolSpec::default())[0].field, "spec.addresses");
    }

    #[test]
    fn peer_timers_follow_rfc_4271() {
        let base = "peerAddress: 192.0.2.1\npeerASN: 65001\nmyASN: 65000\n";
        assert!(bgp_peer(&peer(base)).is_empty());
        assert!(bgp_peer(&peer(&format!("{base}holdTime: 0s\nkeepaliveTime: 10s"))).is_empty());
        let e = bgp_peer(&peer(&format!("{base}holdTime: 2s")));
        assert_eq!(e[0].field, "spec.holdTime");
        let e = bgp_peer(&peer(&format!("{base}holdTime: 30s\nkeepaliveTime: 30s")));
        assert_eq!(e[0].field, "spec.keepaliveTime");
        let e = bgp_peer(&peer(&format!("{base}keepaliveTime: 2m")));
        assert_eq!(e[0].field, "spec.keepaliveTime");
    }

    #[test]
    fn peer_cross_field_rules() {
        let spec = peer(
            "peerAddress: 2001:db8::1\npeerASN: 0\nmyASN: 65000\nsourceAddress: 192.0.2.1\n\
             password: x\npasswordSecret: {name: s}\nrouterID: 0.0.0.0\n",
        );
        let fields: Vec<_> = bgp_peer(&spec).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "spec.peerASN",
                "spec.sourceAddress",
                "spec.routerID",
                "spec.password"
            ]
        );
    }

    #[test]
    fn advertisement_communities_are_parsed() {
        let spec: BGPAdvertisementSpec = serde_saphyr::from_str(
            "communities: ['65000:1', no-export, '70000:1']\nlargeCommunities: ['1:2:3', '1:2']\naggregationLength: 33",
        )
        .unwrap();
        let fields: Vec<_> = bgp_advertisement(&spec)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.communities[2]",
                "spec.largeCommunities[1]",
                "spec.aggregationLength"
            ]
        );
    }

    #[test]
    fn selectors_with_bad_operators_are_refused() {
        let spec: L2AdvertisementSpec = serde_saphyr::from_str(
            "interfaces: [eth0, 'a/b', averyveryverylongname]\nnodeSelectors:\n- matchExpressions:\n  - {key: a, operator: In}\n  - {key: b, operator: Near, values: [x]}\n",
        )
        .unwrap();
        let fields: Vec<_> = l2_advertisement(&spec)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.interfaces[1]",
                "spec.interfaces[2]",
                "spec.nodeSelectors[0].matchExpressions[0].values",
                "spec.nodeSelectors[0].matchExpressions[1].operator"
            ]
        );
    }

    #[test]
    fn bfd_ranges_are_checked() {
        let spec = BFDProfileSpec {
            detect_multiplier: Some(1),
            minimum_ttl: Some(255),
            ..Default::default()
        };
        let fields: Vec<_> = bfd_profile(&spec).into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["spec.detectMultiplier", "spec.minimumTtl"]);
    }

    fn pool(name: &str, addresses: &[&str]) -> crate::IPPool {
        crate::IPPool::new(
            name,
            IPPoolSpec {
                addresses: addresses.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn a_pool_overlapping_an_earlier_one_is_reported_on_its_entry_naming_the_earlier() {
        // (pools in precedence order, (pool, field, message) found)
        type Found<'a> = Vec<(&'a str, &'a str, &'a str)>;
        let table: Vec<(Vec<crate::IPPool>, Found)> = vec![
            (
                vec![pool("a", &["10.0.0.0/24"]), pool("b", &["10.1.0.0/24"])],
                vec![],
            ),
            (
                vec![
                    pool("a", &["10.0.0.0/24"]),
                    pool("b", &["10.1.0.0/24", "10.0.0.128/25"]),
                ],
                vec![("b", "spec.addresses[1]", "overlaps IPPool \"a\"")],
            ),
            // Precedence is the caller's order, not the name's.
            (
                vec![pool("z", &["10.0.0.5"]), pool("a", &["10.0.0.0-10.0.0.9"])],
                vec![("a", "spec.addresses[0]", "overlaps IPPool \"z\"")],
            ),
            // A chain: each is checked against every earlier pool; families apart.
            (
                vec![
                    pool("a", &["10.0.0.0/30", "2001:db8::/64"]),
                    pool("b", &["10.0.0.2-10.0.0.5", "2001:db9::/64"]),
                    pool("c", &["10.0.0.5", "2001:db8::1"]),
                ],
                vec![
                    ("b", "spec.addresses[0]", "overlaps IPPool \"a\""),
                    ("c", "spec.addresses[0]", "overlaps IPPool \"b\""),
                    ("c", "spec.addresses[1]", "overlaps IPPool \"a\""),
                ],
            ),
            // An invalid entry takes no part; the pool's valid ones do.
            (
                vec![
                    pool("a", &["banana", "10.0.0.0/24"]),
                    pool("b", &["10.0.0.1"]),
                ],
                vec![("b", "spec.addresses[0]", "overlaps IPPool \"a\"")],
            ),
        ];
        for (pools, want) in table {
            let refs: Vec<&crate::IPPool> = pools.iter().collect();
            let got: Vec<(String, String, String)> = pool_overlaps(&refs)
                .into_iter()
                .map(|f| {
                    assert!(!f.missing_reference);
                    (f.name, f.error.field, f.error.message)
                })
                .collect();
            let want: Vec<(String, String, String)> = want
                .iter()
                .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
                .collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn references_to_absent_pools_peers_and_profiles_name_the_field_and_the_object() {
        let peer: crate::BGPPeer = crate::BGPPeer::new(
            "tor",
            peer("peerAddress: 192.0.2.1\npeerASN: 65001\nmyASN: 65000\nbfdProfile: fast\n"),
        );
        let bgp = crate::BGPAdvertisement::new(
            "adv",
            serde_saphyr::from_str("ipPools: [a, gone]\npeers: [tor, nobody]\n").unwrap(),
        );
        let l2 = crate::L2Advertisement::new(
            "lan",
            serde_saphyr::from_str("ipPools: [gone]\n").unwrap(),
        );
        let names = |profiles: &[&str]| Names {
            pools: ["a".to_owned()].into(),
            peers: ["tor".to_owned()].into(),
            profiles: profiles.iter().map(|p| p.to_string()).collect(),
        };
        let found: Vec<String> = missing_references(&[&peer], &[&bgp], &[&l2], &names(&[]))
            .into_iter()
            .map(|f| {
                assert!(f.missing_reference);
                format!("{} {}: {}", f.kind, f.name, f.error)
            })
            .collect();
        assert_eq!(
            found,
            [
                "BGPPeer tor: spec.bfdProfile: no BFDProfile \"fast\"",
                "BGPAdvertisement adv: spec.ipPools[1]: no IPPool \"gone\"",
                "BGPAdvertisement adv: spec.peers[1]: no BGPPeer \"nobody\"",
                "L2Advertisement lan: spec.ipPools[0]: no IPPool \"gone\"",
            ]
        );
        let found = missing_references(&[&peer], &[], &[], &names(&["fast"]));
        assert!(found.is_empty(), "{found:?}");
    }
}

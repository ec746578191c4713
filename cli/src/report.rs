//! The report: what the objects read from the API server say, problems first.
//!
//! [`build`] is pure: it takes every object of each kind (or why that kind could not be
//! read) and returns the [`Report`] that the text and JSON renderings print. Who announces
//! an address comes from the `HeraldNode`s through [`herald_api::node::announcers`], the one
//! reading the controller shares; when the `HeraldNode`s are unreadable the Services'
//! `herald.dev/Announced` condition stands in.

use std::collections::BTreeSet;

use herald_api::annotations::ALLOCATED_FROM;
use herald_api::node::{self, VIA_BGP};
use herald_api::status::VALID;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde::Serialize;

use crate::inputs::{Inputs, Listed};

/// The Service condition the controller writes from the `HeraldNode`s.
pub const ANNOUNCED_CONDITION: &str = "herald.dev/Announced";

/// The cluster-wide status.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// What is wrong, most serious kind first.
    pub problems: Vec<Problem>,
    /// What the report could not see (kinds the user may not list), and what that hides.
    pub notes: Vec<String>,
    /// Services of type LoadBalancer, by namespace and name.
    pub services: Vec<ServiceRow>,
    /// `HeraldNode`s by name.
    pub nodes: Vec<NodeRow>,
    /// `IPPool`s by name.
    pub pools: Vec<PoolRow>,
}

/// What a problem is about; problems sort in this order.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum ProblemKind {
    /// A LoadBalancer Service has no address.
    ServiceWithoutAddress,
    /// A Service's address is announced by no node.
    AddressNotAnnounced,
    /// A node's BGP session is not Established.
    SessionNotEstablished,
    /// A node announces nothing (not Ready, excluded by label, draining).
    NodeExcluded,
    /// A pool has no address left in a family it hands out.
    PoolExhausted,
    /// A pool is not `Ready` (or has no status yet).
    PoolNotReady,
    /// Services hold addresses a pool no longer contains.
    PoolConflicting,
    /// A configuration object's `Valid` condition is `False`.
    InvalidConfiguration,
}

/// One problem.
#[derive(Serialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The object concerned, as `Service default/web` or `Node n1`.
    pub object: String,
    /// What is wrong with it.
    pub detail: String,
}

/// One LoadBalancer Service.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its addresses (`status.loadBalancer.ingress`) and who announces each.
    pub addresses: Vec<AddressRow>,
    /// The pool the addresses came from (`herald.dev/allocated-from`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The `herald.dev/Announced` condition, if the controller wrote one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announced: Option<ConditionRow>,
}

/// One address of a Service.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AddressRow {
    /// The address (or hostname) in the ingress.
    pub address: String,
    /// Who announces it, by node then way; `None` when the `HeraldNode`s are unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announcers: Option<Vec<AnnouncerRow>>,
}

/// How one node announces one address ([`herald_api::node::Announcer`], serializable).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AnnouncerRow {
    /// Node name.
    pub node: String,
    /// `BGP` or `L2`.
    pub via: String,
    /// The BGP peers, or the layer-2 interfaces.
    pub through: Vec<String>,
}

/// A condition as the report shows it.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConditionRow {
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

/// One node's speaker.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    /// Node name.
    pub name: String,
    /// BGP sessions established / configured, as `3/4` (empty before the first report).
    pub sessions: String,
    /// Addresses announced.
    pub announced_count: u32,
    /// Why the node announces nothing, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded: Option<String>,
}

/// One pool.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PoolRow {
    /// Pool name.
    pub name: String,
    /// IPv4 counts, if the pool has IPv4 addresses.
    #[serde(rename = "ipv4", skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<FamilyCounts>,
    /// IPv6 counts, if the pool has IPv6 addresses.
    #[serde(rename = "ipv6", skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<FamilyCounts>,
    /// The `Ready` condition's status; `None` before the controller wrote one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// `spec.disabled`: hands out nothing new.
    pub disabled: bool,
}

/// A pool's counts in one family.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FamilyCounts {
    /// Addresses held by at least one Service.
    pub assigned: u64,
    /// Addresses free, in decimal (an IPv6 pool can hold more than 64 bits count).
    pub available: String,
}

impl Report {
    /// Whether anything is wrong.
    pub fn has_problems(&self) -> bool {
        !self.problems.is_empty()
    }
}

impl ServiceRow {
    /// Who announces the Service, as `n1,n2 via BGP (tor1,tor2); n3 via L2 (eth0)`: one
    /// string when all its addresses have the same announcers, else one per address
    /// (`192.0.2.1: ... | 2001:db8::1: ...`). `-` for none; when the `HeraldNode`s were
    /// unreadable, what the `herald.dev/Announced` condition says.
    pub fn announced_by(&self) -> String {
        let known: Vec<(&str, &[AnnouncerRow])> = self
            .addresses
            .iter()
            .filter_map(|a| Some((a.address.as_str(), a.announcers.as_deref()?)))
            .collect();
        if known.is_empty() || known.len() < self.addresses.len() {
            return match &self.announced {
                Some(c) if c.message.is_empty() => format!("{} ({})", c.status, c.reason),
                Some(c) => format!("{}: {}", c.status, c.message),
                None => "-".to_owned(),
            };
        }
        if known.windows(2).all(|w| w[0].1 == w[1].1) {
            return grouped(known[0].1);
        }
        known
            .iter()
            .map(|(address, announcers)| format!("{address}: {}", grouped(announcers)))
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

/// `announcers` as `n1,n2 via BGP (tor1,tor2); n3 via L2 (eth0)`: nodes that announce the
/// same way through the same peers or interfaces share a group; BGP groups come first.
pub fn grouped(announcers: &[AnnouncerRow]) -> String {
    if announcers.is_empty() {
        return "-".to_owned();
    }
    let mut groups: Vec<(&str, &[String], Vec<&str>)> = Vec::new();
    for a in announcers {
        match groups
            .iter_mut()
            .find(|(via, through, _)| *via == a.via && *through == a.through.as_slice())
        {
            Some((_, _, nodes)) => nodes.push(&a.node),
            None => groups.push((&a.via, &a.through, vec![&a.node])),
        }
    }
    // Stable: within a way, groups keep the order of their first node.
    groups.sort_by_key(|(via, _, _)| *via != VIA_BGP);
    groups
        .iter()
        .map(|(via, through, nodes)| {
            let mut s = format!("{} via {via}", nodes.join(","));
            if !through.is_empty() {
                s.push_str(&format!(" ({})", through.join(",")));
            }
            s
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The report of `inputs`.
pub fn build(inputs: &Inputs) -> Report {
    let mut problems = Vec::new();
    let notes = notes(inputs);
    let services = services(inputs, &mut problems);
    let nodes = nodes(inputs, &mut problems);
    let pools = pools(inputs, &mut problems);
    invalid_configuration(inputs, &mut problems);
    problems.sort();
    problems.dedup();
    Report {
        problems,
        notes,
        services,
        nodes,
        pools,
    }
}

fn notes(inputs: &Inputs) -> Vec<String> {
    let kinds: [(&str, Option<&String>, &str); 7] = [
        (
            "Services",
            unreadable(&inputs.services),
            "the Services section is empty and Services without an address are not reported",
        ),
        (
            "HeraldNodes",
            unreadable(&inputs.nodes),
            "announcers are taken from each Service's herald.dev/Announced condition and the \
             Nodes section is empty",
        ),
        (
            "IPPools",
            unreadable(&inputs.pools),
            "pool counts and readiness are not shown",
        ),
        (
            "BGPPeers",
            unreadable(&inputs.peers),
            "BGPPeers are not checked for validity",
        ),
        (
            "BGPAdvertisements",
            unreadable(&inputs.bgp_advertisements),
            "BGPAdvertisements are not checked for validity",
        ),
        (
            "L2Advertisements",
            unreadable(&inputs.l2_advertisements),
            "L2Advertisements are not checked for validity",
        ),
        (
            "BFDProfiles",
            unreadable(&inputs.bfd_profiles),
            "BFDProfiles are not checked for validity",
        ),
    ];
    kinds
        .into_iter()
        .filter_map(|(kind, why, hidden)| Some(format!("{kind} not readable ({}): {hidden}", why?)))
        .collect()
}

fn unreadable<T>(listed: &Listed<T>) -> Option<&String> {
    match listed {
        Listed::Items(_) => None,
        Listed::Unreadable(why) => Some(why),
    }
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn services(inputs: &Inputs, problems: &mut Vec<Problem>) -> Vec<ServiceRow> {
    let nodes_read = inputs.nodes.is_read();
    let mut rows: Vec<ServiceRow> = inputs
        .services
        .items()
        .iter()
        .filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"))
        .map(|s| {
            let namespace = s.metadata.namespace.clone().unwrap_or_default();
            let name = s.metadata.name.clone().unwrap_or_default();
            let status = s.status.as_ref();
            let ingress = status
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_deref())
                .unwrap_or_default();
            let addresses = ingress
                .iter()
                .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
                .map(|address| AddressRow {
                    announcers: nodes_read.then(|| {
                        node::announcers(inputs.nodes.items(), &address)
                            .into_iter()
                            .map(|a| AnnouncerRow {
                                node: a.node,
                                via: a.via,
                                through: a.through,
                            })
                            .collect()
                    }),
                    address,
                })
                .collect();
            let announced = status
                .and_then(|s| s.conditions.as_deref())
                .and_then(|c| condition(c, ANNOUNCED_CONDITION))
                .map(|c| ConditionRow {
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                });
            ServiceRow {
                namespace,
                name,
                addresses,
                pool: s
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ALLOCATED_FROM))
                    .cloned(),
                announced,
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for row in &rows {
        let object = format!("Service {}/{}", row.namespace, row.name);
        if row.addresses.is_empty() {
            problems.push(Problem {
                kind: ProblemKind::ServiceWithoutAddress,
                object: object.clone(),
                detail: "no address in status.loadBalancer.ingress".to_owned(),
            });
        }
        for a in &row.addresses {
            if a.announcers.as_ref().is_some_and(Vec::is_empty) {
                problems.push(Problem {
                    kind: ProblemKind::AddressNotAnnounced,
                    object: object.clone(),
                    detail: format!("{} is announced by no node", a.address),
                });
            }
        }
        // Without the HeraldNodes, the controller's reading of them.
        if !nodes_read
            && !row.addresses.is_empty()
            && let Some(c) = row.announced.as_ref().filter(|c| c.status == "False")
        {
            problems.push(Problem {
                kind: ProblemKind::AddressNotAnnounced,
                object: object.clone(),
                detail: format!(
                    "{ANNOUNCED_CONDITION} is False ({}): {}",
                    c.reason, c.message
                ),
            });
        }
    }
    rows
}

fn nodes(inputs: &Inputs, problems: &mut Vec<Problem>) -> Vec<NodeRow> {
    // (node, peer) pairs the HeraldNodes speak for; the BGPPeers' copies fill in the rest.
    let mut reported = BTreeSet::new();
    let mut rows = Vec::new();
    for n in inputs.nodes.items() {
        let name = n.metadata.name.clone().unwrap_or_default();
        let status = n.status.clone().unwrap_or_default();
        let object = format!("Node {name}");
        if let Some(why) = &status.excluded {
            problems.push(Problem {
                kind: ProblemKind::NodeExcluded,
                object: object.clone(),
                detail: format!("excluded: {why}"),
            });
        }
        for s in &status.bgp {
            reported.insert((name.clone(), s.peer.clone()));
            if s.state != "established" {
                let mut detail = format!("BGP peer {} ({}) is {}", s.peer, s.address, s.state);
                if let Some(e) = &s.last_error {
                    detail.push_str(&format!("; last error: {e}"));
                }
                problems.push(Problem {
                    kind: ProblemKind::SessionNotEstablished,
                    object: object.clone(),
                    detail,
                });
            }
        }
        rows.push(NodeRow {
            name,
            sessions: status.sessions,
            announced_count: status.announced_count,
            excluded: status.excluded,
        });
    }
    for p in inputs.peers.items() {
        let peer = p.metadata.name.clone().unwrap_or_default();
        for s in p.status.iter().flat_map(|s| &s.sessions) {
            if s.state != "established" && !reported.contains(&(s.node.clone(), peer.clone())) {
                problems.push(Problem {
                    kind: ProblemKind::SessionNotEstablished,
                    object: format!("Node {}", s.node),
                    detail: format!(
                        "BGP peer {peer} ({}) is {} (from the BGPPeer's status)",
                        p.spec.peer_address, s.state
                    ),
                });
            }
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

fn pools(inputs: &Inputs, problems: &mut Vec<Problem>) -> Vec<PoolRow> {
    let mut rows = Vec::new();
    for p in inputs.pools.items() {
        let name = p.metadata.name.clone().unwrap_or_default();
        let object = format!("IPPool {name}");
        let disabled = p.spec.disabled;
        let Some(status) = &p.status else {
            problems.push(Problem {
                kind: ProblemKind::PoolNotReady,
                object,
                detail: "no status yet: is herald-controller running?".to_owned(),
            });
            rows.push(PoolRow {
                name,
                ipv4: None,
                ipv6: None,
                ready: None,
                disabled,
            });
            continue;
        };
        let family = |assigned: u64, available: &str| {
            let free: u128 = available.parse().unwrap_or(0);
            (assigned > 0 || free > 0).then(|| FamilyCounts {
                assigned,
                available: free.to_string(),
            })
        };
        let ipv4 = family(status.assigned_ipv4, &status.available_ipv4.to_string());
        let ipv6 = family(status.assigned_ipv6, &status.available_ipv6);
        for (label, counts) in [("IPv4", &ipv4), ("IPv6", &ipv6)] {
            if let Some(c) = counts.as_ref().filter(|c| c.available == "0" && !disabled) {
                problems.push(Problem {
                    kind: ProblemKind::PoolExhausted,
                    object: object.clone(),
                    detail: format!("{label} exhausted: {} assigned, none available", c.assigned),
                });
            }
        }
        let ready = condition(&status.conditions, "Ready");
        match ready {
            Some(c) if c.status == "True" => {}
            Some(c) => problems.push(Problem {
                kind: ProblemKind::PoolNotReady,
                object: object.clone(),
                detail: format!("Ready is {} ({}): {}", c.status, c.reason, c.message),
            }),
            None => problems.push(Problem {
                kind: ProblemKind::PoolNotReady,
                object: object.clone(),
                detail: "no Ready condition yet".to_owned(),
            }),
        }
        if let Some(c) = condition(&status.conditions, "Conflicting").filter(|c| c.status == "True")
        {
            problems.push(Problem {
                kind: ProblemKind::PoolConflicting,
                object: object.clone(),
                detail: c.message.clone(),
            });
        }
        rows.push(PoolRow {
            name,
            ipv4,
            ipv6,
            ready: ready.map(|c| c.status.clone()),
            disabled,
        });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

fn invalid_configuration(inputs: &Inputs, problems: &mut Vec<Problem>) {
    let peers = inputs.peers.items().iter().map(|o| {
        let conditions = o.status.as_ref().map(|s| s.valid.conditions.as_slice());
        ("BGPPeer", o.metadata.name.as_deref(), conditions)
    });
    let bgp = inputs.bgp_advertisements.items().iter().map(|o| {
        let conditions = o.status.as_ref().map(|s| s.conditions.as_slice());
        ("BGPAdvertisement", o.metadata.name.as_deref(), conditions)
    });
    let l2 = inputs.l2_advertisements.items().iter().map(|o| {
        let conditions = o.status.as_ref().map(|s| s.conditions.as_slice());
        ("L2Advertisement", o.metadata.name.as_deref(), conditions)
    });
    let bfd = inputs.bfd_profiles.items().iter().map(|o| {
        let conditions = o.status.as_ref().map(|s| s.conditions.as_slice());
        ("BFDProfile", o.metadata.name.as_deref(), conditions)
    });
    for (kind, name, conditions) in peers.chain(bgp).chain(l2).chain(bfd) {
        let Some(c) = conditions
            .and_then(|c| condition(c, VALID))
            .filter(|c| c.status == "False")
        else {
            continue;
        };
        problems.push(Problem {
            kind: ProblemKind::InvalidConfiguration,
            object: format!("{kind} {}", name.unwrap_or_default()),
            detail: format!("Valid is False ({}): {}", c.reason, c.message),
        });
    }
}

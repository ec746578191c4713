//! This node's `HeraldNode`: what the speaker does, for the controller (each Service's
//! `herald.dev/Announced` condition, each `BGPPeer`'s sessions) and `herald status`.
//!
//! ```text
//!  /status document ──(every second)──> node_status() ──changed?──> apply status (one write)
//! ```
//!
//! The object is named after the node and owned by its `Node`, so it goes when the Node does.
//! It is written by server-side apply to the status subresource, only when what it says
//! changed and at most once per [`MIN_INTERVAL`]: at rest a node writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use herald_api::node::{
    Announcement, BfdSessionState, BgpSessionState, HeraldNode, HeraldNodeStatus, VIA_BGP, VIA_L2,
    XdpAttachment,
};
use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::admin::Shared;
use crate::status::StatusReport;

/// The server-side apply field manager.
pub const FIELD_MANAGER: &str = "herald-speaker";
/// The shortest time between two writes of the object.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// A session's `since` moves only if it differs by more than this from the last one written
/// (it is derived from an uptime in whole seconds).
const SINCE_SLACK: SignedDuration = SignedDuration::from_secs(2);

/// What `report` says about this node, as its `HeraldNode` status. `previous` (the last one
/// written) keeps each session's `since` stable while its state is unchanged; `now` dates
/// states entered now.
pub fn node_status(
    report: &StatusReport,
    previous: Option<&HeraldNodeStatus>,
    now: Timestamp,
) -> HeraldNodeStatus {
    let before: BTreeMap<&str, &BgpSessionState> = previous
        .map(|p| p.bgp.iter().map(|s| (s.peer.as_str(), s)).collect())
        .unwrap_or_default();
    let bgp: Vec<BgpSessionState> = report
        .bgp
        .iter()
        .map(|s| {
            let measured = s
                .uptime_seconds
                .map(|up| now - SignedDuration::from_secs(i64::try_from(up).unwrap_or(i64::MAX)));
            let kept = before
                .get(s.peer.as_str())
                .filter(|b| b.state == s.state)
                .and_then(|b| b.since.clone());
            let since = match (kept, measured) {
                (Some(k), Some(m)) if k.0.duration_since(m).abs() <= SINCE_SLACK => Some(k),
                (Some(k), None) => Some(k),
                (_, Some(m)) => Some(Time(m)),
                (None, None) => Some(Time(now)),
            };
            BgpSessionState {
                peer: s.peer.clone(),
                address: s.address.clone(),
                state: s.state.clone(),
                since,
                prefixes_sent: s.prefixes_sent,
                prefixes_received: s.prefixes_received,
                last_error: s.last_error.clone(),
            }
        })
        .collect();
    let established: BTreeSet<&str> = report
        .bgp
        .iter()
        .filter(|s| s.state == "established")
        .map(|s| s.peer.as_str())
        .collect();
    let announcements = announcements(report, &established);
    let announced_count = announcements
        .iter()
        .flat_map(|a| a.addresses.iter())
        .collect::<BTreeSet<_>>()
        .len();
    let excluded = report.desired.excluded.clone().or_else(|| {
        (report.drain != crate::drain::Phase::Serving)
            .then(|| format!("drain: {}", report.drain.as_str()))
    });
    HeraldNodeStatus {
        sessions: format!("{}/{}", established.len(), report.bgp.len()),
        announced_count: u32::try_from(announced_count).unwrap_or(u32::MAX),
        excluded,
        bgp,
        bfd: report
            .bfd
            .iter()
            .map(|b| BfdSessionState {
                peer: b.peer.clone(),
                state: b.state.clone(),
                down_count: b.down_count,
            })
            .collect(),
        announcements,
        xdp: report
            .dataplane
            .attached
            .iter()
            .map(|a| {
                // `/status` writes `interface (mode)`.
                let (interface, mode) = a
                    .split_once(" (")
                    .map_or((a.as_str(), ""), |(i, m)| (i, m.trim_end_matches(')')));
                XdpAttachment {
                    interface: interface.to_owned(),
                    mode: mode.to_owned(),
                }
            })
            .collect(),
    }
}

/// The Services' addresses this node really announces: over BGP, those covered by a desired
/// route to a peer whose session is Established (grouped by the set of such peers); on layer
/// 2, those it answers ARP/NDP for (grouped by interfaces).
fn announcements(report: &StatusReport, established: &BTreeSet<&str>) -> Vec<Announcement> {
    // Desired routes to Established peers, by prefix length, so an address is looked up
    // once per length present (host routes: one; with aggregation: two).
    // The peers of a prefix in a vector: a set would cost a 290-byte node per prefix, and
    // this runs every second over every desired route.
    let mut routes: BTreeMap<u8, BTreeMap<IpNet, Vec<&str>>> = BTreeMap::new();
    for r in &report.desired.routes {
        if !established.contains(r.peer.as_str()) {
            continue;
        }
        if let Ok(net) = r.prefix.parse::<IpNet>() {
            let peers = routes
                .entry(net.prefix_len())
                .or_default()
                .entry(net)
                .or_default();
            if !peers.contains(&r.peer.as_str()) {
                peers.push(r.peer.as_str());
            }
        }
    }
    let mut bgp: BTreeMap<BTreeSet<&str>, BTreeSet<IpAddr>> = BTreeMap::new();
    let addresses = report
        .services
        .iter()
        .flat_map(|s| s.addresses.iter())
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .collect::<BTreeSet<_>>();
    for addr in addresses {
        let mut peers = BTreeSet::new();
        for (len, nets) in &routes {
            if let Ok(net) = IpNet::new(addr, *len).map(|n| n.trunc())
                && let Some(p) = nets.get(&net)
            {
                peers.extend(p.iter().copied());
            }
        }
        if !peers.is_empty() {
            bgp.entry(peers).or_default().insert(addr);
        }
    }
    let mut l2: BTreeMap<IpAddr, BTreeSet<&str>> = BTreeMap::new();
    for owned in &report.l2_owned {
        // `/status` writes `address@interface`.
        if let Some((a, i)) = owned.split_once('@')
            && let Ok(addr) = a.parse::<IpAddr>()
        {
            l2.entry(addr).or_default().insert(i);
        }
    }
    let mut l2_groups: BTreeMap<BTreeSet<&str>, BTreeSet<IpAddr>> = BTreeMap::new();
    for (addr, interfaces) in l2 {
        l2_groups.entry(interfaces).or_default().insert(addr);
    }
    let strings = |v: &BTreeSet<&str>| v.iter().map(|s| (*s).to_owned()).collect();
    let addrs = |v: &BTreeSet<IpAddr>| v.iter().map(IpAddr::to_string).collect();
    bgp.iter()
        .map(|(peers, a)| Announcement {
            via: VIA_BGP.to_owned(),
            peers: strings(peers),
            interfaces: Vec::new(),
            addresses: addrs(a),
        })
        .chain(l2_groups.iter().map(|(interfaces, a)| Announcement {
            via: VIA_L2.to_owned(),
            peers: Vec::new(),
            interfaces: strings(interfaces),
            addresses: addrs(a),
        }))
        .collect()
}

/// The owner reference that ties a `HeraldNode` to its `Node` (garbage-collected with it).
pub fn owner(node_name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Node".to_owned(),
        name: node_name.to_owned(),
        uid: uid.to_owned(),
        ..Default::default()
    }
}

/// The task keeping this node's `HeraldNode` in line with `/status`; ends when dropped.
#[derive(Debug)]
pub struct NodeWriter {
    task: JoinHandle<()>,
}

impl Drop for NodeWriter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NodeWriter {
    /// Starts writing `node_name`'s object from `shared`'s status once `owner` (from the
    /// Node's UID) is known.
    pub fn spawn(
        client: Client,
        node_name: &str,
        shared: Arc<Shared>,
        owner: watch::Receiver<Option<OwnerReference>>,
    ) -> Self {
        let api: Api<HeraldNode> = Api::all(client);
        let task = tokio::spawn(write_loop(api, node_name.to_owned(), shared, owner));
        NodeWriter { task }
    }
}

async fn write_loop(
    api: Api<HeraldNode>,
    name: String,
    shared: Arc<Shared>,
    mut owner: watch::Receiver<Option<OwnerReference>>,
) {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    // The owner the object was last applied with; `None`: (re)create it first.
    let mut created: Option<OwnerReference> = None;
    let mut written: Option<HeraldNodeStatus> = None;
    let mut failing = false;
    let mut tick = tokio::time::interval(MIN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(own) = owner.borrow_and_update().clone() else {
            continue;
        };
        let status = {
            let report = shared.status.read().expect("status lock poisoned");
            node_status(&report, written.as_ref(), Timestamp::now())
        };
        if created.as_ref() == Some(&own) && written.as_ref() == Some(&status) {
            continue;
        }
        let result = async {
            if created.as_ref() != Some(&own) {
                let object = json!({
                    "apiVersion": "herald.dev/v1alpha1",
                    "kind": "HeraldNode",
                    "metadata": {"name": name, "ownerReferences": [own]},
                    "spec": {},
                });
                api.patch(&name, &params, &Patch::Apply(&object)).await?;
                created = Some(own.clone());
                written = None;
            }
            let patch = json!({
                "apiVersion": "herald.dev/v1alpha1",
                "kind": "HeraldNode",
                "metadata": {"name": name},
                "status": status,
            });
            api.patch_status(&name, &params, &Patch::Apply(&patch))
                .await
                .map(|_| ())
        }
        .await;
        match result {
            Ok(()) => {
                debug!(node = %name, sessions = %status.sessions, announced = status.announced_count, "HeraldNode written");
                written = Some(status);
                failing = false;
            }
            Err(e) => {
                // Deleted by hand: create it again on the next tick.
                if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    created = None;
                }
                if !failing {
                    warn!(node = %name, error = %e, "HeraldNode not written; retrying every second");
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    // Table rows are tuples spelled out where they are used.
    #![allow(clippy::type_complexity)]

    use super::*;
    use crate::status::{BfdStatusRow, BgpStatus, DesiredStatus, RouteStatus, ServiceStatus};

    fn bgp(peer: &str, state: &str, uptime: Option<u64>) -> BgpStatus {
        BgpStatus {
            peer: peer.into(),
            address: format!("192.0.2.{}", peer.len()),
            state: state.into(),
            uptime_seconds: uptime,
            prefixes_sent: 2,
            prefixes_received: 0,
            last_error: None,
        }
    }

    fn route(peer: &str, prefix: &str) -> RouteStatus {
        RouteStatus {
            peer: peer.into(),
            prefix: prefix.into(),
            ..Default::default()
        }
    }

    fn service(name: &str, addresses: &[&str]) -> ServiceStatus {
        ServiceStatus {
            service: format!("default/{name}"),
            addresses: addresses.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn report() -> StatusReport {
        StatusReport {
            node: "n1".into(),
            services: vec![
                service("web", &["198.51.100.1", "2001:db8::1"]),
                service("api", &["198.51.100.2"]),
                service("l2", &["192.0.2.10"]),
                service("nowhere", &["203.0.113.99"]),
            ],
            desired: DesiredStatus {
                routes: vec![
                    route("tor1", "198.51.100.1/32"),
                    route("tor2", "198.51.100.1/32"),
                    route("tor1", "2001:db8::1/128"),
                    // Aggregated: covers .2 (and .1) for tor2.
                    route("tor2", "198.51.100.0/24"),
                    // tor3 is down: nothing it is sent counts.
                    route("tor3", "203.0.113.99/32"),
                ],
                ..Default::default()
            },
            bgp: vec![
                bgp("tor1", "established", Some(30)),
                bgp("tor2", "established", Some(5)),
                bgp("tor3", "active", None),
            ],
            bfd: vec![BfdStatusRow {
                peer: "tor1".into(),
                state: "Up".into(),
                down_count: 1,
                ..Default::default()
            }],
            l2_owned: vec!["192.0.2.10@eth0".into(), "192.0.2.10@eth1".into()],
            dataplane: crate::status::DataplaneStatus {
                attached: vec!["eth0 (native)".into()],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_status_says_which_addresses_go_which_way_to_which_established_peers() {
        let now: Timestamp = "2026-12-03T12:00:00Z".parse().unwrap();
        let s = node_status(&report(), None, now);
        assert_eq!(s.sessions, "2/3");
        assert_eq!(s.announced_count, 4, "{s:#?}");
        let got: Vec<(&str, Vec<String>, Vec<String>, Vec<String>)> = s
            .announcements
            .iter()
            .map(|a| {
                (
                    a.via.as_str(),
                    a.peers.clone(),
                    a.interfaces.clone(),
                    a.addresses.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    VIA_BGP,
                    strings(&["tor1"]),
                    vec![],
                    strings(&["2001:db8::1"])
                ),
                (
                    VIA_BGP,
                    strings(&["tor1", "tor2"]),
                    vec![],
                    strings(&["198.51.100.1"])
                ),
                (
                    VIA_BGP,
                    strings(&["tor2"]),
                    vec![],
                    strings(&["198.51.100.2"])
                ),
                (
                    VIA_L2,
                    vec![],
                    strings(&["eth0", "eth1"]),
                    strings(&["192.0.2.10"])
                ),
            ]
        );
        let tor1 = &s.bgp[0];
        assert_eq!(
            tor1.since.as_ref().map(|t| t.0.to_string()),
            Some("2026-12-03T11:59:30Z".into())
        );
        assert_eq!(s.bfd[0].state, "Up");
        assert_eq!(
            s.xdp,
            [XdpAttachment {
                interface: "eth0".into(),
                mode: "native".into()
            }]
        );
        assert_eq!(s.excluded, None);
    }

    #[test]
    fn since_stays_put_while_the_state_does_and_moves_when_it_changes() {
        let t0: Timestamp = "2026-12-03T12:00:00Z".parse().unwrap();
        let first = node_status(&report(), None, t0);
        // A second later the uptime says 31 s (or 30, rounding): the same `since`.
        let mut later = report();
        later.bgp[0].uptime_seconds = Some(32);
        let t1 = t0 + SignedDuration::from_secs(1);
        let second = node_status(&later, Some(&first), t1);
        assert_eq!(second, first, "nothing to write a second later");
        // The session went down and came back: a new `since`.
        later.bgp[0].uptime_seconds = Some(1);
        let third = node_status(&later, Some(&second), t1);
        assert_ne!(third.bgp[0].since, first.bgp[0].since);
        // A state without uptime dates from when it was first seen, and keeps that date.
        let tor3 = first.bgp[2].since.clone();
        assert_eq!(tor3, Some(Time(t0)));
        assert_eq!(second.bgp[2].since, tor3);
    }

    #[test]
    fn an_excluded_or_drained_node_says_why() {
        let now = Timestamp::UNIX_EPOCH;
        let mut r = report();
        r.desired.excluded = Some("node excluded (NotReady)".into());
        assert_eq!(
            node_status(&r, None, now).excluded.as_deref(),
            Some("node excluded (NotReady)")
        );
        let mut r = report();
        r.drain = crate::drain::Phase::Draining;
        assert_eq!(
            node_status(&r, None, now).excluded.as_deref(),
            Some("drain: draining")
        );
    }
}

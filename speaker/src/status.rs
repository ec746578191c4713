//! The `/status` document and its rendering as tables (`herald-speaker status`).
//!
//! One serde type serves both sides: the daemon serialises it, the `status` command parses
//! it back, so the two never disagree about field names.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Everything `/status` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// This node's name.
    pub node: String,
    /// The configuration in force and the last reload.
    pub config: ConfigStatus,
    /// Services and their addresses.
    pub services: Vec<ServiceStatus>,
    /// Address counts per pool.
    pub pools: Vec<PoolStatus>,
    /// What this node wants announced (before the sessions carry it out).
    pub desired: DesiredStatus,
    /// BGP sessions.
    #[serde(default)]
    pub bgp: Vec<BgpStatus>,
    /// BFD sessions.
    #[serde(default)]
    pub bfd: Vec<BfdStatusRow>,
    /// Addresses this node answers ARP/NDP for, as `address@interface`.
    #[serde(default)]
    pub l2_owned: Vec<String>,
    /// The XDP balancer and decapsulation on this node.
    #[serde(default)]
    pub dataplane: DataplaneStatus,
    /// Whether the node is being taken out of service (`herald-speaker drain`, or the
    /// `herald.dev/drain` Node annotation).
    #[serde(default)]
    pub drain: crate::drain::Phase,
    /// Cluster mode: how this node announces each Service with an address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub announcements: Vec<AnnouncementStatus>,
}

/// The dataplane as it is (attachments, counters), next to the desired VIPs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneStatus {
    /// `interface (mode)` for each XDP attachment.
    pub attached: Vec<String>,
    /// Interfaces decapsulating (backend host).
    pub decap: Vec<String>,
    /// VIPs bound to `lo` (this host is one of their backends).
    pub bound: Vec<String>,
    /// Programmed VIPs with their counters.
    pub vips: Vec<DataplaneVip>,
    /// Dropped VIP packets per reason (non-zero only).
    pub drops: BTreeMap<String, u64>,
    /// Packets decapsulated here.
    pub decapsulated: u64,
    /// What could not be programmed at the last change.
    pub errors: Vec<String>,
    /// Next hops of the backends with a managed neighbour entry Herald keeps
    /// (`address dev interface`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_hops: Vec<String>,
    /// Backends whose next hop could not be kept resolved at the last look, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_hop_errors: Vec<String>,
}

/// One programmed VIP and its counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneVip {
    /// `address:port/protocol-number`.
    pub vip: String,
    /// Service.
    pub service: String,
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
}

/// How this node announces one Service (cluster mode).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnnouncementStatus {
    /// `namespace/name`.
    pub service: String,
    /// "announced by node X via BGP to 2 peers", "not announced by node X: ...".
    pub announcement: String,
}

/// One BFD session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BfdStatusRow {
    /// Peer object name.
    pub peer: String,
    /// `AdminDown`, `Down`, `Init` or `Up`.
    pub state: String,
    /// Times the session left Up.
    pub down_count: u64,
    /// Control packets sent.
    pub sent: u64,
    /// Control packets accepted.
    pub received: u64,
}

/// One BGP session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BgpStatus {
    /// Peer object name.
    pub peer: String,
    /// Peer address.
    pub address: String,
    /// FSM state, lower case as in RFC 4271 §8.2.2's names: `idle`, `connect`, `active`,
    /// `opensent`, `openconfirm`, `established`.
    pub state: String,
    /// Seconds since Established.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<u64>,
    /// Prefixes announced to the peer.
    pub prefixes_sent: u64,
    /// Prefixes the peer announces (counted, not installed).
    pub prefixes_received: u64,
    /// Why the last session ended or connecting fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The configuration in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigStatus {
    /// `--config` as given.
    pub path: String,
    /// Number of configurations applied since start (1 after start-up).
    pub generation: u64,
    /// Why the last reload was refused, if it was (the previous config kept running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Problems found with the persisted state at start-up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_warnings: Vec<String>,
    /// Objects left out of the configuration in force, and why (cluster mode: a BGPPeer
    /// whose password Secret cannot be read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
}

/// One Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// `namespace/name`.
    pub service: String,
    /// Its addresses, primary family first.
    pub addresses: Vec<String>,
    /// The pool of each address (`-` under a conflict).
    pub pools: Vec<String>,
    /// Why it has no (or not all) addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Standalone: the addresses it held before the last applied configuration, when they
    /// differ (its address moved); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moved_from: Vec<String>,
}

/// Address counts of one pool (decimal strings: IPv6 counts exceed JSON's safe integers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// Pool name.
    pub pool: String,
    /// Assigned IPv4 addresses.
    pub assigned_ipv4: String,
    /// Available IPv4 addresses.
    pub available_ipv4: String,
    /// Assigned IPv6 addresses.
    pub assigned_ipv6: String,
    /// Available IPv6 addresses.
    pub available_ipv6: String,
}

/// The announce output for this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredStatus {
    /// Why this node announces nothing, if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded: Option<String>,
    /// Routes per peer.
    pub routes: Vec<RouteStatus>,
    /// Layer-2 candidacies.
    pub l2: Vec<L2Status>,
    /// Dataplane VIPs.
    pub vips: Vec<VipStatus>,
    /// Routes a session cannot carry (no next hop of the route's family), with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsendable: Vec<String>,
}

/// One desired route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// Peer name.
    pub peer: String,
    /// Prefix.
    pub prefix: String,
    /// Communities (`a:b`) and large communities (`a:b:c`).
    pub communities: Vec<String>,
    /// LOCAL_PREF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
}

/// One layer-2 candidacy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L2Status {
    /// Address.
    pub address: String,
    /// Interfaces of this node.
    pub interfaces: Vec<String>,
    /// Nodes eligible by configuration.
    pub eligible_nodes: Vec<String>,
}

/// One dataplane VIP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VipStatus {
    /// `address:port/protocol`.
    pub vip: String,
    /// `backend*weight`.
    pub backends: Vec<String>,
}

fn or_none(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(",")
    }
}

/// Renders rows as a left-aligned table with a header.
fn table(out: &mut String, title: &str, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "{title}");
    if rows.is_empty() {
        let _ = writeln!(out, "  (none)\n");
        return;
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from(" ");
        for (cell, w) in cells.iter().zip(&widths) {
            let _ = write!(s, " {cell:<w$}");
        }
        s.trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for row in rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
    out.push('\n');
}

impl StatusReport {
    /// The report as readable tables.
    pub fn render(&self) -> String {
        let mut out = format!(
            "node {}   config {} (generation {})\n",
            self.node, self.config.path, self.config.generation
        );
        if let Some(e) = &self.config.last_error {
            let _ = writeln!(
                out,
                "last reload REFUSED, previous config still running: {e}"
            );
        }
        for w in &self.config.state_warnings {
            let _ = writeln!(out, "state: {w}");
        }
        for w in &self.config.left_out {
            let _ = writeln!(out, "left out: {w}");
        }
        if let Some(e) = &self.desired.excluded {
            let _ = writeln!(out, "this node announces nothing: {e}");
        }
        for u in &self.desired.unsendable {
            let _ = writeln!(out, "NOT SENT: {u}");
        }
        match self.drain {
            crate::drain::Phase::Serving => {}
            crate::drain::Phase::Draining => {
                let _ = writeln!(
                    out,
                    "DRAINING: routes carry GRACEFUL_SHUTDOWN (65535:0) until they are withdrawn"
                );
            }
            crate::drain::Phase::Drained => {
                let _ = writeln!(out, "DRAINED: nothing is announced from this node");
            }
        }
        out.push('\n');
        let rows: Vec<Vec<String>> = self
            .services
            .iter()
            .map(|s| {
                vec![
                    s.service.clone(),
                    s.addresses.join(","),
                    s.pools.join(","),
                    s.error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(
            &mut out,
            "SERVICES",
            &["SERVICE", "ADDRESSES", "POOLS", "ERROR"],
            &rows,
        );
        if !self.announcements.is_empty() {
            let rows: Vec<Vec<String>> = self
                .announcements
                .iter()
                .map(|a| vec![a.service.clone(), a.announcement.clone()])
                .collect();
            table(&mut out, "ANNOUNCEMENTS", &["SERVICE", "HOW"], &rows);
        }
        let rows: Vec<Vec<String>> = self
            .pools
            .iter()
            .map(|p| {
                vec![
                    p.pool.clone(),
                    p.assigned_ipv4.clone(),
                    p.available_ipv4.clone(),
                    p.assigned_ipv6.clone(),
                    p.available_ipv6.clone(),
                ]
            })
            .collect();
        let header = [
            "POOL",
            "ASSIGNED V4",
            "AVAILABLE V4",
            "ASSIGNED V6",
            "AVAILABLE V6",
        ];
        table(&mut out, "POOLS", &header, &rows);
        let rows: Vec<Vec<String>> = self
            .bgp
            .iter()
            .map(|b| {
                vec![
                    b.peer.clone(),
                    b.address.clone(),
                    b.state.clone(),
                    b.uptime_seconds
                        .map(|s| format!("{s}s"))
                        .unwrap_or_default(),
                    b.prefixes_sent.to_string(),
                    b.prefixes_received.to_string(),
                    b.last_error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let header = [
            "PEER",
            "ADDRESS",
            "STATE",
            "UPTIME",
            "SENT",
            "RECEIVED",
            "LAST ERROR",
        ];
        table(&mut out, "BGP SESSIONS", &header, &rows);
        let rows: Vec<Vec<String>> = self
            .desired
            .routes
            .iter()
            .map(|r| {
                vec![
                    r.peer.clone(),
                    r.prefix.clone(),
                    r.communities.join(" "),
                    r.local_pref.map(|l| l.to_string()).unwrap_or_default(),
                ]
            })
            .collect();
        table(
            &mut out,
            "DESIRED ROUTES",
            &["PEER", "PREFIX", "COMMUNITIES", "LOCAL PREF"],
            &rows,
        );
        let rows: Vec<Vec<String>> = self
            .bfd
            .iter()
            .map(|b| {
                vec![
                    b.peer.clone(),
                    b.state.clone(),
                    b.down_count.to_string(),
                    b.sent.to_string(),
                    b.received.to_string(),
                ]
            })
            .collect();
        table(
            &mut out,
            "BFD SESSIONS",
            &["PEER", "STATE", "DOWNS", "SENT", "RECEIVED"],
            &rows,
        );
        let rows: Vec<Vec<String>> = self
            .l2_owned
            .iter()
            .map(|o| {
                let (a, i) = o.split_once('@').unwrap_or((o, ""));
                vec![a.to_owned(), i.to_owned()]
            })
            .collect();
        table(
            &mut out,
            "LAYER 2 OWNED BY THIS NODE",
            &["ADDRESS", "INTERFACE"],
            &rows,
        );
        let rows: Vec<Vec<String>> = self
            .desired
            .l2
            .iter()
            .map(|l| {
                vec![
                    l.address.clone(),
                    l.interfaces.join(","),
                    l.eligible_nodes.join(","),
                ]
            })
            .collect();
        table(
            &mut out,
            "LAYER 2 CANDIDATES (THIS NODE)",
            &["ADDRESS", "INTERFACES", "ELIGIBLE (KNOWN NODES)"],
            &rows,
        );
        let rows: Vec<Vec<String>> = self
            .desired
            .vips
            .iter()
            .map(|v| vec![v.vip.clone(), v.backends.join(" ")])
            .collect();
        table(&mut out, "DATAPLANE VIPS", &["VIP", "BACKENDS"], &rows);
        let d = &self.dataplane;
        if !d.attached.is_empty() || !d.decap.is_empty() {
            let _ = writeln!(
                out,
                "XDP attached: {}   decap: {}   bound to lo: {}   decapsulated: {}",
                or_none(&d.attached),
                or_none(&d.decap),
                or_none(&d.bound),
                d.decapsulated
            );
            let drops: Vec<String> = d.drops.iter().map(|(r, n)| format!("{r}={n}")).collect();
            let _ = writeln!(out, "drops: {}", or_none(&drops));
            for e in &d.errors {
                let _ = writeln!(out, "not programmed: {e}");
            }
            if !d.attached.is_empty() {
                let _ = writeln!(out, "next hops kept resolved: {}", or_none(&d.next_hops));
            }
            for e in &d.next_hop_errors {
                let _ = writeln!(out, "next hop: {e}");
            }
            out.push('\n');
            let rows: Vec<Vec<String>> = d
                .vips
                .iter()
                .map(|v| {
                    vec![
                        v.vip.clone(),
                        v.service.clone(),
                        v.packets.to_string(),
                        v.bytes.to_string(),
                    ]
                })
                .collect();
            table(
                &mut out,
                "XDP FORWARDING",
                &["VIP", "SERVICE", "PACKETS", "BYTES"],
                &rows,
            );
        }
        out
    }
}

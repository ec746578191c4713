//! `HeraldNode`: what one node's speaker does, written by that speaker to the status
//! subresource only. One object per node, named after it, owned by the `Node` (deleted with
//! it). The controller reads them into each Service's `herald.dev/Announced` condition and
//! each `BGPPeer`'s sessions; `herald status` prints them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// What one node's speaker does: its BGP and BFD sessions and the addresses it announces.
///
/// Cluster-scoped, named after the node, written by that node's speaker (status only) and
/// deleted with the `Node`. There is nothing to set in `spec`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "HeraldNode",
    doc = "What one node's speaker does: its BGP and BFD sessions and the addresses it announces. Written by that node's speaker.",
    plural = "heraldnodes",
    shortname = "hn",
    category = "herald",
    status = "HeraldNodeStatus",
    printcolumn = r#"{"name":"Sessions","type":"string","description":"BGP sessions established / configured","jsonPath":".status.sessions"}"#,
    printcolumn = r#"{"name":"Announced","type":"integer","description":"Addresses announced (BGP or layer 2)","jsonPath":".status.announcedCount"}"#,
    printcolumn = r#"{"name":"Excluded","type":"string","jsonPath":".status.excluded"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct HeraldNodeSpec {}

/// The node's speaker as it last reported itself.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HeraldNodeStatus {
    /// BGP sessions established / configured, as `3/4`.
    #[serde(default)]
    pub sessions: String,
    /// Addresses this node announces, by BGP or on layer 2.
    #[serde(default)]
    pub announced_count: u32,
    /// Why this node announces nothing (not Ready, excluded by label, draining), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded: Option<String>,
    /// One entry per BGP session.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bgp: Vec<BgpSessionState>,
    /// One entry per BFD session.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bfd: Vec<BfdSessionState>,
    /// The addresses announced, grouped by how: each address appears once per way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub announcements: Vec<Announcement>,
    /// Interfaces with Herald's XDP program attached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xdp: Vec<XdpAttachment>,
}

/// One BGP session of the node.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BgpSessionState {
    /// `BGPPeer` name.
    pub peer: String,
    /// Peer address.
    pub address: String,
    /// FSM state in lower case: `idle`, `connect`, `active`, `opensent`, `openconfirm`,
    /// `established`.
    pub state: String,
    /// When the session entered its state (Established: when it came up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// Prefixes announced to the peer.
    #[serde(default)]
    pub prefixes_sent: u64,
    /// Prefixes the peer announces (counted, not installed).
    #[serde(default)]
    pub prefixes_received: u64,
    /// The last NOTIFICATION sent or received, or why connecting fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One BFD session of the node.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BfdSessionState {
    /// `BGPPeer` name.
    pub peer: String,
    /// `AdminDown`, `Down`, `Init` or `Up` (RFC 5880).
    pub state: String,
    /// Times the session left Up.
    #[serde(default)]
    pub down_count: u64,
}

/// Addresses announced one way.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Announcement {
    /// `BGP` or `L2`.
    pub via: String,
    /// BGP: the `BGPPeer`s whose Established sessions carry these addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// L2: the interfaces answering ARP/NDP for these addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// The addresses (no prefix length).
    pub addresses: Vec<String>,
}

/// Herald's XDP program on one interface.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct XdpAttachment {
    /// Interface name.
    pub interface: String,
    /// `native`, `generic` or `offload`.
    pub mode: String,
}

/// `BGP` in [`Announcement::via`].
pub const VIA_BGP: &str = "BGP";
/// `L2` in [`Announcement::via`].
pub const VIA_L2: &str = "L2";

/// How one node announces one address: `via` [`VIA_BGP`] with the peers carrying it, or
/// [`VIA_L2`] with the interfaces answering for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Announcer {
    /// Node name.
    pub node: String,
    /// [`VIA_BGP`] or [`VIA_L2`].
    pub via: String,
    /// BGP peers, or layer-2 interfaces.
    pub through: Vec<String>,
}

/// Who announces `address` according to `nodes`' reports, sorted by node then way. The one
/// place the controller (the Service condition) and `herald status` read this from.
pub fn announcers<'a>(
    nodes: impl IntoIterator<Item = &'a HeraldNode>,
    address: &str,
) -> Vec<Announcer> {
    let mut out: Vec<Announcer> = nodes
        .into_iter()
        .filter_map(|n| Some((n.metadata.name.as_deref()?, n.status.as_ref()?)))
        .flat_map(|(node, status)| {
            status
                .announcements
                .iter()
                .filter(|a| a.addresses.iter().any(|x| x == address))
                .map(move |a| Announcer {
                    node: node.to_owned(),
                    via: a.via.clone(),
                    through: if a.via == VIA_L2 {
                        a.interfaces.clone()
                    } else {
                        a.peers.clone()
                    },
                })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, announcements: Vec<Announcement>) -> HeraldNode {
        let mut n = HeraldNode::new(name, HeraldNodeSpec {});
        n.status = Some(HeraldNodeStatus {
            announcements,
            ..Default::default()
        });
        n
    }

    fn bgp(peers: &[&str], addresses: &[&str]) -> Announcement {
        Announcement {
            via: VIA_BGP.into(),
            peers: peers.iter().map(|s| s.to_string()).collect(),
            interfaces: vec![],
            addresses: addresses.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn announcers_lists_each_node_and_way_that_carries_the_address() {
        let nodes = [
            node(
                "n2",
                vec![bgp(&["tor1", "tor2"], &["192.0.2.1", "192.0.2.2"])],
            ),
            node(
                "n1",
                vec![
                    bgp(&["tor1"], &["192.0.2.1"]),
                    Announcement {
                        via: VIA_L2.into(),
                        peers: vec![],
                        interfaces: vec!["eth0".into()],
                        addresses: vec!["192.0.2.1".into()],
                    },
                ],
            ),
            node("n3", vec![bgp(&["tor1"], &["192.0.2.2"])]),
            HeraldNode::new("n4", HeraldNodeSpec {}),
        ];
        let got = announcers(&nodes, "192.0.2.1");
        let want = [
            ("n1", VIA_BGP, vec!["tor1"]),
            ("n1", VIA_L2, vec!["eth0"]),
            ("n2", VIA_BGP, vec!["tor1", "tor2"]),
        ]
        .map(|(node, via, through)| Announcer {
            node: node.into(),
            via: via.into(),
            through: through.into_iter().map(String::from).collect(),
        });
        assert_eq!(got, want);
        assert!(announcers(&nodes, "192.0.2.9").is_empty());
    }
}

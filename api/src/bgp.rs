//! `BGPPeer` and `BGPAdvertisement`: whom the speakers peer with, and what they announce.

use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::duration::KubeDuration;
use crate::schema;

/// Default BGP hold time (RFC 4271 §10 suggests 90 s).
pub const DEFAULT_HOLD_TIME_SECS: u64 = 90;
/// Default time between connection attempts to a peer.
pub const DEFAULT_CONNECT_TIME_SECS: u64 = 10;
/// Default BGP port.
pub const DEFAULT_PEER_PORT: u16 = 179;
/// Default key of the password in the Secret that `passwordSecret` names.
pub const DEFAULT_PASSWORD_KEY: &str = "password";

/// One BGP neighbour of the speakers.
///
/// Cluster-scoped. Every speaker whose node matches `nodeSelectors` opens a session to
/// `peerAddress`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "BGPPeer",
    doc = "A BGP neighbour of the Herald speakers.",
    plural = "bgppeers",
    category = "herald",
    status = "BGPPeerStatus",
    printcolumn = r#"{"name":"Address","type":"string","jsonPath":".spec.peerAddress"}"#,
    printcolumn = r#"{"name":"Peer ASN","type":"integer","jsonPath":".spec.peerASN"}"#,
    printcolumn = r#"{"name":"My ASN","type":"integer","jsonPath":".spec.myASN"}"#,
    printcolumn = r#"{"name":"Established","type":"string","description":"Nodes with the session Established / nodes selected","jsonPath":".status.established"}"#,
    printcolumn = r#"{"name":"Valid","type":"string","jsonPath":".status.conditions[?(@.type==\"Valid\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = kube::core::Rule::new("!has(self.password) || !has(self.passwordSecret)")
    .message("password and passwordSecret are mutually exclusive"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.holdTime) || duration(self.holdTime) == duration('0s') || duration(self.holdTime) >= duration('3s')")
    .message("holdTime must be 0s (no keepalives) or at least 3s (RFC 4271 §4.2)"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.keepaliveTime) || (has(self.holdTime) && duration(self.holdTime) == duration('0s')) || duration(self.keepaliveTime) < (has(self.holdTime) ? duration(self.holdTime) : duration('90s'))")
    .message("keepaliveTime must be shorter than holdTime (default 90s)"))]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerSpec {
    /// Address of the neighbour (IPv4 or IPv6).
    #[schemars(schema_with = "schema::ip_address")]
    pub peer_address: IpAddr,

    /// AS number of the neighbour, 1-4294967295 (AS 0 is reserved, RFC 7607).
    #[serde(rename = "peerASN")]
    #[schemars(range(min = 1, max = 4294967295u32))]
    pub peer_asn: u32,

    /// AS number of the speakers in this session, 1-4294967295. Equal to `peerASN` makes
    /// the session iBGP.
    #[serde(rename = "myASN")]
    #[schemars(range(min = 1, max = 4294967295u32))]
    pub my_asn: u32,

    /// TCP port of the neighbour. Default 179.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub peer_port: Option<u16>,

    /// Local address to connect from. Default: chosen by the kernel's routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_ip_address")]
    pub source_address: Option<IpAddr>,

    /// Proposed hold time: `0s` (no keepalives) or at least `3s`. Default `90s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_time: Option<KubeDuration>,

    /// Time between KEEPALIVEs, below the hold time. Default: a third of the negotiated
    /// hold time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<KubeDuration>,

    /// Time between attempts to connect to the neighbour. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_time: Option<KubeDuration>,

    /// Send with TTL 255 to reach a neighbour more than one hop away (eBGP multihop).
    /// Default `false`: TTL 1 for eBGP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ebgp_multi_hop: bool,

    /// GTSM (RFC 5082, FRR's `ttl-security hops`): send with TTL 255 and accept only packets
    /// that crossed at most this many hops (received TTL at least 256 minus this). `1`: the
    /// neighbour is directly connected. Default: off.
    #[serde(
        rename = "ttlSecurityHops",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 254))]
    pub ttl_security_hops: Option<u8>,

    /// Announce both address families on this session (MetalLB's field of the same name):
    /// the other family's routes get the node's address of that family as next hop. `false`:
    /// only routes of the session's own family. Default `true` (MetalLB's default is `false`).
    #[serde(
        rename = "dualStackAddressFamily",
        default = "crate::pool::default_true",
        skip_serializing_if = "crate::pool::is_true"
    )]
    pub dual_stack_address_family: bool,

    /// TCP MD5 password (RFC 2385), in plain text. Prefer `passwordSecret` in a cluster;
    /// standalone configurations use this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 80))]
    pub password: Option<String>,

    /// Secret holding the TCP MD5 password (cluster mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeyRef>,

    /// Name of a `BFDProfile`: run BFD with the neighbour and drop the session when BFD
    /// goes down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub bfd_profile: Option<String>,

    /// Advertise graceful restart (RFC 4724) so the neighbour keeps our routes while a
    /// speaker restarts. Default `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub graceful_restart: bool,

    /// Nodes whose speakers peer with this neighbour. Empty: all nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub node_selectors: Vec<LabelSelector>,

    /// BGP identifier to use, the same on every node this peer selects (a Node's
    /// `herald.dev/router-id` annotation overrides it for that node). Default, per node: the
    /// session's IPv4 source address, else the Node's IPv4 InternalIP, else the node's lowest
    /// IPv4 address outside container interfaces and link-local addresses.
    #[serde(rename = "routerID", default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_ipv4_address")]
    pub router_id: Option<Ipv4Addr>,

    /// Wait for the neighbour to connect instead of connecting out. Default `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passive: bool,
}

/// Status of a `BGPPeer`: the controller's `Valid` condition and, from each selected node's
/// `HeraldNode`, that node's session with the peer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerStatus {
    /// `Valid` (see the other configuration kinds).
    #[serde(flatten)]
    pub valid: crate::status::ObjectStatus,
    /// Nodes with the session Established / nodes running it, as `3/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub established: Option<String>,
    /// Each node running a session with this peer, and its state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<PeerSession>,
}

/// One node's session with a peer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PeerSession {
    /// Node name.
    pub node: String,
    /// FSM state in lower case (`established`, `active`, ...).
    pub state: String,
    /// When the session entered its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

/// A key in a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Secret. Default: the namespace Herald runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    /// Key within the Secret. Default `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub key: Option<String>,
}

/// How the addresses of some pools are announced over BGP.
///
/// Cluster-scoped. Several advertisements may select the same pool (for example one per
/// peer group with different communities); each yields its own announcement.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "BGPAdvertisement",
    doc = "How the addresses of some pools are announced over BGP.",
    plural = "bgpadvertisements",
    category = "herald",
    status = "crate::status::ObjectStatus",
    printcolumn = r#"{"name":"Pools","type":"string","jsonPath":".spec.ipPools"}"#,
    printcolumn = r#"{"name":"Peers","type":"string","jsonPath":".spec.peers"}"#,
    printcolumn = r#"{"name":"Valid","type":"string","jsonPath":".status.conditions[?(@.type==\"Valid\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BGPAdvertisementSpec {
    /// Names of the pools to announce. With `ipPoolSelectors`: a pool is announced when it is
    /// named or matches a selector. Both empty: all pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub ip_pools: Vec<String>,

    /// Label selectors on `IPPool` objects to announce.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub ip_pool_selectors: Vec<LabelSelector>,

    /// Names of the `BGPPeer` objects to announce to. Empty: all peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub peers: Vec<String>,

    /// Nodes that announce. Empty: all nodes (subject to node exclusion and
    /// `externalTrafficPolicy: Local`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub node_selectors: Vec<LabelSelector>,

    /// BGP communities (RFC 1997) to attach: `65000:100` or a well-known name
    /// (`no-export`, `no-advertise`, `no-export-subconfed`, `no-peer`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::communities")]
    pub communities: Vec<String>,

    /// BGP large communities (RFC 8092) to attach: `65000:1:2`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::large_communities")]
    pub large_communities: Vec<String>,

    /// LOCAL_PREF for iBGP peers (ignored towards eBGP peers, RFC 4271 §5.1.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,

    /// Announce IPv4 addresses aggregated to this prefix length instead of as /32.
    /// Default 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 32))]
    pub aggregation_length: Option<u8>,

    /// Announce IPv6 addresses aggregated to this prefix length instead of as /128.
    /// Default 128.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 128))]
    pub aggregation_length_v6: Option<u8>,
}

/// Parses a BGP community (RFC 1997): `a:b` with 16-bit halves, or a well-known name
/// (RFC 1997, RFC 3765).
pub fn parse_community(s: &str) -> Result<u32, String> {
    match s {
        "no-export" => return Ok(0xFFFF_FF01),
        "no-advertise" => return Ok(0xFFFF_FF02),
        "no-export-subconfed" => return Ok(0xFFFF_FF03),
        "no-peer" => return Ok(0xFFFF_FF04),
        _ => {}
    }
    let bad = || format!("{s:?} is not a:b with both parts 0-65535, nor a well-known community");
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    Ok((u32::from(a) << 16) | u32::from(b))
}

/// Parses a BGP large community (RFC 8092): `a:b:c` with 32-bit parts.
pub fn parse_large_community(s: &str) -> Result<[u32; 3], String> {
    let bad = || format!("{s:?} is not a:b:c with each part 0-4294967295");
    let parts: Vec<&str> = s.split(':').collect();
    let [a, b, c] = parts.as_slice() else {
        return Err(bad());
    };
    let p = |x: &str| x.parse::<u32>().map_err(|_| bad());
    Ok([p(a)?, p(b)?, p(c)?])
}

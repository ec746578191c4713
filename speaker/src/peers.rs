//! The set of BGP sessions this node runs, kept in step with the configuration.
//!
//! ```text
//!   BGPPeer objects ─ peer_config() ─> PeerConfig ┐
//!                                                 ├─ Peers::reconcile ─> PeerHandle per peer (driver task)
//!   announce Desired.bgp ─────────────────────────┴─ Peers::set_routes ─> handle.set_routes (level-triggered)
//! ```
//!
//! A peer whose configuration is unchanged keeps its session across reloads; a changed one
//! is closed with a Cease ("configuration change") and started again; a removed one is
//! closed with a Cease. Passive peers are served by one listener (the only time Herald binds
//! the BGP port, so that by default it runs beside a CNI's BGP daemon).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use herald_api::validate::FieldError;
use herald_api::{BFDProfile, BGPPeer, BGPPeerSpec};
use ipnet::IpNet;
use tracing::{info, warn};

use crate::announce;
use crate::bfd::driver::{BfdConfig, BfdHandle, BfdStatus};
use crate::bfd::profile::Profile;
use crate::bfd::transport::Hop;
use crate::bgp::driver::{PeerConfig, PeerHandle, PeerStatus};
use crate::bgp::fsm::SessionConfig;
use crate::bgp::listener::Listener;
use crate::bgp::route::{DesiredRoutes, RouteAttrs};
use crate::coupling::couple;
use crate::metrics::{Histograms, PeerLabel};

/// The Node annotation that sets this node's BGP identifier for all its sessions.
pub const ROUTER_ID_ANNOTATION: &str = "herald.dev/router-id";

/// The Node label that sets this node's own AS number for all its sessions (one `BGPPeer`
/// for every rack, each rack its AS: OpenELB's `asPerRack`).
pub const ASN_LABEL: &str = "herald.dev/asn";

/// Host and Node facts a peer configuration may need.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// The lowest IPv4 address of an up, non-loopback interface that is not a container or
    /// pod interface and not link-local: the last resort for the router ID.
    pub router_id: Option<Ipv4Addr>,
    /// This node's `herald.dev/router-id` annotation, if it has one.
    pub node_router_id: Option<Result<Ipv4Addr, String>>,
    /// This node's first IPv4 `InternalIP` (its `Node` object's status).
    pub node_internal_ipv4: Option<Ipv4Addr>,
    /// This node's first IPv6 `InternalIP`.
    pub node_internal_ipv6: Option<std::net::Ipv6Addr>,
    /// An address of the other family on the interface that holds the given local address
    /// (global scope); `None` in tests.
    pub sibling_address: Option<fn(IpAddr) -> Option<IpAddr>>,
    /// This node's `herald.dev/asn` label, if it has one.
    pub node_asn: Option<Result<u32, String>>,
    /// Asks the kernel which local address it would use towards a peer (the session's source
    /// when `sourceAddress` is unset); `None` in tests.
    pub route_source: Option<fn(IpAddr) -> Option<IpAddr>>,
}

/// Interfaces whose addresses do not identify the node (the same on every node, or made for
/// pods): never the router ID.
fn virtual_interface(name: &str) -> bool {
    const PREFIXES: [&str; 12] = [
        "docker", "cni", "veth", "cali", "cilium", "lxc", "flannel", "vxlan", "kube-", "virbr",
        "podman", "tunl",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

impl HostFacts {
    /// Reads the host's interfaces, and this node's identity from its `Node` object if the
    /// configuration has one.
    pub fn read(node: Option<&k8s_openapi::api::core::v1::Node>) -> Self {
        use nix::net::if_::InterfaceFlags as F;
        let router_id = nix::ifaddrs::getifaddrs().ok().and_then(|addrs| {
            addrs
                .filter(|a| a.flags.contains(F::IFF_UP) && !a.flags.contains(F::IFF_LOOPBACK))
                .filter(|a| !virtual_interface(&a.interface_name))
                .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
                .filter(|ip| !ip.is_link_local())
                .min()
        });
        let mut facts = HostFacts {
            router_id,
            route_source: Some(|peer| local_address_towards(peer).ok()),
            sibling_address: Some(sibling_address),
            ..Default::default()
        };
        if let Some(node) = node {
            facts.set_node(node);
        }
        facts
    }

    /// Takes this node's annotation, label and InternalIP.
    pub fn set_node(&mut self, node: &k8s_openapi::api::core::v1::Node) {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        self.node_router_id = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ROUTER_ID_ANNOTATION))
            .map(|v| {
                v.trim().parse().map_err(|_| {
                    format!(
                        "Node {name:?} annotation {ROUTER_ID_ANNOTATION}={v:?}: not an IPv4 address"
                    )
                })
            });
        self.node_asn = node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ASN_LABEL))
            .map(|v| match v.trim().parse::<u32>() {
                Ok(n) if n != 0 && n != u32::MAX => Ok(n),
                _ => Err(format!(
                    "Node {name:?} label {ASN_LABEL}={v:?}: not an AS number (1 to 4294967294)"
                )),
            });
        self.node_internal_ipv4 = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .find_map(|a| a.address.parse().ok());
        self.node_internal_ipv6 = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .find_map(|a| a.address.parse().ok());
    }
}

/// A global address of the other family on the interface holding `local`.
fn sibling_address(local: IpAddr) -> Option<IpAddr> {
    let addrs: Vec<_> = nix::ifaddrs::getifaddrs().ok()?.collect();
    let ip = |a: &nix::ifaddrs::InterfaceAddress| -> Option<IpAddr> {
        let s = a.address?;
        s.as_sockaddr_in()
            .map(|v| IpAddr::V4(v.ip()))
            .or_else(|| s.as_sockaddr_in6().map(|v| IpAddr::V6(v.ip())))
    };
    let interface = addrs
        .iter()
        .find(|a| ip(a) == Some(local))?
        .interface_name
        .clone();
    addrs
        .iter()
        .filter(|a| a.interface_name == interface)
        .filter_map(ip)
        .find(|other| match (local, other) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => {
                !v6.is_loopback() && !v6.is_unicast_link_local() && !v6.is_unspecified()
            }
            (IpAddr::V6(_), IpAddr::V4(v4)) => !v4.is_loopback() && !v4.is_link_local(),
            _ => false,
        })
}

/// The next hop for the family the session's own address is not of: an address of that
/// family on the session's interface, else the Node's `InternalIP` of that family. Without
/// one, routes of that family are not sent on this session (and reported).
fn other_family_next_hop(spec: &BGPPeerSpec, host: &HostFacts) -> Option<IpAddr> {
    let source = spec
        .source_address
        .or_else(|| host.route_source.and_then(|f| f(spec.peer_address)));
    let on_link = source.and_then(|s| host.sibling_address.and_then(|f| f(s)));
    match spec.peer_address {
        IpAddr::V4(_) => on_link
            .filter(IpAddr::is_ipv6)
            .or(host.node_internal_ipv6.map(IpAddr::V6)),
        IpAddr::V6(_) => on_link
            .filter(IpAddr::is_ipv4)
            .or(host.node_internal_ipv4.map(IpAddr::V4)),
    }
}

fn secs(field: &str, d: std::time::Duration) -> Result<u16, FieldError> {
    u16::try_from(d.as_secs()).map_err(|_| FieldError::new(field, "longer than 65535s"))
}

/// This node's BGP identifier towards a peer, in order: the Node's `herald.dev/router-id`
/// annotation, `spec.routerID`, the session's source address if it is IPv4 (`sourceAddress`,
/// else the kernel's choice towards the peer), the Node's IPv4 `InternalIP`, the host's
/// lowest IPv4 address outside container and link-local ranges.
fn router_id(spec: &BGPPeerSpec, host: &HostFacts) -> Result<Ipv4Addr, FieldError> {
    if let Some(annotated) = &host.node_router_id {
        return annotated
            .clone()
            .map_err(|e| FieldError::new("spec.routerID", e));
    }
    let v4 = |a: Option<IpAddr>| match a {
        Some(IpAddr::V4(a)) if !a.is_unspecified() => Some(a),
        _ => None,
    };
    spec.router_id
        .or_else(|| v4(spec.source_address))
        .or_else(|| v4(host.route_source.and_then(|f| f(spec.peer_address))))
        .or(host.node_internal_ipv4)
        .or(host.router_id)
        .ok_or_else(|| {
            FieldError::new(
                "spec.routerID",
                format!(
                    "required: no IPv4 address to derive a BGP identifier from (set spec.routerID, \
                     or the Node annotation {ROUTER_ID_ANNOTATION})"
                ),
            )
        })
}

/// The session configuration for a `BGPPeer`.
pub fn peer_config(spec: &BGPPeerSpec, host: &HostFacts) -> Result<PeerConfig, FieldError> {
    let router_id = router_id(spec, host)?;
    let my_asn = match &host.node_asn {
        Some(Ok(asn)) => *asn,
        Some(Err(e)) => return Err(FieldError::new("spec.myASN", e.clone())),
        None => spec.my_asn,
    };
    let mut session = SessionConfig::new(my_asn, spec.peer_asn, router_id);
    if let Some(h) = &spec.hold_time {
        session.hold_time = secs("spec.holdTime", h.get())?;
    }
    if let Some(k) = &spec.keepalive_time {
        session.keepalive = Some(secs("spec.keepaliveTime", k.get())?);
    }
    session.connect_retry = spec.connect_time.as_ref().map_or(
        std::time::Duration::from_secs(herald_api::bgp::DEFAULT_CONNECT_TIME_SECS),
        |c| c.get(),
    );
    session.passive = spec.passive;
    if !spec.graceful_restart {
        session.graceful_restart = None;
    }
    if spec.dual_stack_address_family {
        match other_family_next_hop(spec, host) {
            Some(IpAddr::V6(a)) => session.next_hop_v6 = Some(a),
            Some(IpAddr::V4(a)) => session.next_hop_v4 = Some(a),
            None => {}
        }
    }
    let mut config = PeerConfig::new(session, spec.peer_address);
    if let Some(port) = spec.peer_port {
        config.peer_port = port;
    }
    config.source_addr = spec.source_address;
    config.password = spec.password.clone();
    if spec.ebgp_multi_hop {
        config.ttl = Some(255);
    }
    if let Some(hops) = spec.ttl_security_hops {
        config.gtsm = true;
        config.ttl = Some(hops);
    }
    Ok(config)
}

/// The routes of one peer as the session takes them.
pub fn desired_routes(routes: &BTreeMap<IpNet, announce::RouteAttrs>) -> DesiredRoutes {
    routes
        .iter()
        .map(|(net, a)| {
            let large = a
                .large_communities
                .iter()
                .map(|[x, y, z]| (*x, *y, *z))
                .collect();
            (
                *net,
                RouteAttrs::new(a.communities.clone(), large, a.local_pref),
            )
        })
        .collect()
}

/// One peer as the configuration wants it: the BGP session and, with a `bfdProfile`, BFD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedPeer {
    /// The BGP session.
    pub config: PeerConfig,
    /// BFD timers (`BGPPeer.spec.bfdProfile`); the session then waits for BFD Up.
    pub bfd: Option<Profile>,
}

/// A running peer: its configuration, the BGP task, and the BFD task with its coupling.
#[derive(Debug)]
struct Running {
    wanted: WantedPeer,
    handle: PeerHandle,
    bfd: Option<(BfdHandle, Coupling)>,
}

/// The task passing BFD state to the BGP session; ends when dropped.
#[derive(Debug)]
struct Coupling(tokio::task::JoinHandle<()>);

impl Drop for Coupling {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The address this host uses towards `peer` (the kernel's route choice), for BFD's source.
fn local_address_towards(peer: IpAddr) -> std::io::Result<IpAddr> {
    let bind: SocketAddr = if peer.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("literal");
    let probe = std::net::UdpSocket::bind(bind)?;
    // Connecting a UDP socket sends nothing; it only selects the route and source address.
    probe.connect(SocketAddr::new(peer, 9))?;
    Ok(probe.local_addr()?.ip())
}

/// The running sessions, by peer object name.
#[derive(Debug, Default)]
pub struct Peers {
    running: BTreeMap<String, Running>,
    listener: Option<Listener>,
    listen_addr: Option<SocketAddr>,
    /// `herald_bgp_announce_seconds`, one histogram per running peer.
    announce_seconds: Option<Histograms<PeerLabel>>,
}

impl Peers {
    /// Sessions that serve passive peers listen on `listen_addr`; each session times its
    /// announcements into `announce_seconds` under its peer name.
    pub fn new(listen_addr: SocketAddr, announce_seconds: Histograms<PeerLabel>) -> Self {
        Peers {
            listen_addr: Some(listen_addr),
            announce_seconds: Some(announce_seconds),
            ..Default::default()
        }
    }

    /// Brings the running sessions in line with `wanted` (peer name -> config). Returns the
    /// peers that could not be started, with why.
    pub async fn reconcile(
        &mut self,
        wanted: BTreeMap<String, WantedPeer>,
    ) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(name, r)| wanted.get(*name) != Some(&r.wanted))
            .map(|(name, _)| name.clone())
            .collect();
        let mut changed = !stale.is_empty();
        for name in stale {
            let Running { handle, .. } = self.running.remove(&name).expect("listed above");
            let reason = if wanted.contains_key(&name) {
                "configuration change"
            } else {
                // Removed peers leave the metric: its label set stays bounded by configuration.
                if let Some(h) = &self.announce_seconds {
                    h.remove(&PeerLabel { peer: name.clone() });
                }
                "peer removed from configuration"
            };
            info!(peer = %name, reason, "closing bgp session");
            handle.shutdown(reason).await;
        }
        for (name, w) in wanted {
            if self.running.contains_key(&name) {
                continue;
            }
            let mut config = w.config.clone();
            config.session.bfd = w.bfd.is_some();
            let spawned = match &self.announce_seconds {
                Some(h) => {
                    let histogram = h.get_or_create(&PeerLabel { peer: name.clone() }).clone();
                    PeerHandle::spawn_observed(config, histogram)
                }
                None => PeerHandle::spawn(config),
            };
            let handle = match spawned {
                Ok(h) => h,
                Err(e) => {
                    errors.push((name, e.to_string()));
                    continue;
                }
            };
            info!(peer = %name, address = %w.config.peer_addr, bfd = w.bfd.is_some(), "starting bgp session");
            let bfd = match w.bfd {
                None => None,
                Some(profile) => match start_bfd(&w.config, profile) {
                    Ok(bfd) => {
                        let coupling = tokio::spawn(couple(bfd.watch_status(), handle.bfd_link()));
                        Some((bfd, Coupling(coupling)))
                    }
                    Err(e) => {
                        // BGP waits for BFD Up, so without BFD the session would never come up:
                        // report it rather than run a session that silently stays down.
                        errors.push((name.clone(), format!("bfd: {e}")));
                        None
                    }
                },
            };
            self.running.insert(
                name,
                Running {
                    wanted: w,
                    handle,
                    bfd,
                },
            );
            changed = true;
        }
        if changed && let Err(e) = self.listen().await {
            warn!(error = %e, "cannot listen for passive bgp peers");
            errors.push(("(listener)".into(), e.to_string()));
        }
        errors
    }

    /// Serves the passive peers now running: the listener is bound for the first, updated
    /// in place while some remain (the port stays bound), and closed after the last.
    async fn listen(&mut self) -> Result<(), crate::bgp::error::SessionError> {
        let passive: Vec<&PeerHandle> = self
            .running
            .values()
            .filter(|r| r.wanted.config.session.passive)
            .map(|r| &r.handle)
            .collect();
        match (&mut self.listener, self.listen_addr) {
            (Some(_), _) if passive.is_empty() => {
                if let Some(l) = self.listener.take() {
                    l.close().await;
                }
            }
            (Some(l), _) => l.serve(&passive)?,
            (None, Some(addr)) if !passive.is_empty() => {
                self.listener = Some(Listener::bind(addr, &passive)?);
            }
            (None, _) => {}
        }
        Ok(())
    }

    /// Hands each session its whole desired route set (empty for peers without routes).
    pub fn set_routes(&self, desired: &BTreeMap<String, BTreeMap<IpNet, announce::RouteAttrs>>) {
        let empty = BTreeMap::new();
        for (name, r) in &self.running {
            r.handle
                .set_routes(desired_routes(desired.get(name).unwrap_or(&empty)));
        }
    }

    /// Each session's status, by peer name.
    pub fn statuses(&self) -> Vec<(String, PeerStatus)> {
        self.running
            .iter()
            .map(|(n, r)| (n.clone(), r.handle.status()))
            .collect()
    }

    /// Each BFD session's status, by peer name.
    pub fn bfd_statuses(&self) -> Vec<(String, BfdStatus)> {
        self.running
            .iter()
            .filter_map(|(n, r)| Some((n.clone(), r.bfd.as_ref()?.0.status())))
            .collect()
    }

    /// Closes every session with a Cease carrying `reason`: the peers withdraw the routes.
    pub async fn shutdown(&mut self, reason: &str) {
        self.listener = None;
        for (name, running) in std::mem::take(&mut self.running) {
            info!(peer = %name, "closing bgp session");
            running.handle.shutdown(reason).await;
        }
    }

    /// Ends every session for a planned restart of this speaker: sessions with graceful
    /// restart negotiated close without a NOTIFICATION, so the peers keep the routes as stale
    /// until the next start re-announces them and sends End-of-RIB (RFC 4724); the others get
    /// a Cease carrying `reason`. BFD then tells each peer AdminDown, which is not a failure
    /// (RFC 5882 §3.2), so the router's BGP session is not torn down by BFD either.
    pub async fn stop_for_restart(&mut self, reason: &str) {
        self.listener = None;
        for (name, running) in std::mem::take(&mut self.running) {
            let Running { handle, bfd, .. } = running;
            info!(peer = %name, "closing bgp session for a restart");
            // BGP first: while the coupling runs, our own AdminDown would reach BGP as a
            // BFD Down and send a Cease.
            handle.stop_for_restart(reason).await;
            if let Some((bfd, coupling)) = bfd {
                drop(coupling);
                bfd.admin_down(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}

fn start_bfd(config: &PeerConfig, profile: Profile) -> std::io::Result<BfdHandle> {
    let local = match config.source_addr {
        Some(a) => a,
        None => local_address_towards(config.peer_addr)?,
    };
    let hop = if config.ttl.is_some_and(|t| t > 1) {
        Hop::Multi {
            minimum_ttl: profile.minimum_ttl,
        }
    } else {
        Hop::Single
    };
    BfdHandle::spawn(BfdConfig {
        peer: config.peer_addr,
        local,
        hop,
        profile,
    })
}

/// The peers this node runs: those whose `nodeSelectors` match `node_labels`, configured.
/// The first peer that cannot be configured refuses the whole (standalone mode).
pub fn wanted(
    peers: &[BGPPeer],
    bfd_profiles: &[BFDProfile],
    node_labels: &BTreeMap<String, String>,
    host: &HostFacts,
) -> Result<BTreeMap<String, WantedPeer>, (String, FieldError)> {
    let mut out = BTreeMap::new();
    for p in peers {
        let name = p.metadata.name.clone().unwrap_or_default();
        if let Some(w) =
            wanted_one(p, bfd_profiles, node_labels, host).map_err(|e| (name.clone(), e))?
        {
            out.insert(name, w);
        }
    }
    Ok(out)
}

/// One peer's session on this node: `None` when its `nodeSelectors` leave this node out;
/// an error names the field (a bad selector, no router ID to derive, a missing BFDProfile).
pub fn wanted_one(
    p: &BGPPeer,
    bfd_profiles: &[BFDProfile],
    node_labels: &BTreeMap<String, String>,
    host: &HostFacts,
) -> Result<Option<WantedPeer>, FieldError> {
    let selectors: Vec<_> = p
        .spec
        .node_selectors
        .iter()
        .enumerate()
        .map(|(i, s)| herald_ipam::convert::selector(s, &format!("spec.nodeSelectors[{i}]")))
        .collect::<Result<_, _>>()?;
    if !selectors.is_empty() && !selectors.iter().any(|s| s.matches(node_labels)) {
        return Ok(None);
    }
    let config = peer_config(&p.spec, host)?;
    let bfd = match &p.spec.bfd_profile {
        None => None,
        Some(profile) => {
            let found = bfd_profiles
                .iter()
                .find(|b| b.metadata.name.as_deref() == Some(profile));
            let spec = found.map(|b| &b.spec).ok_or_else(|| {
                FieldError::new(
                    "spec.bfdProfile",
                    format!("no BFDProfile named {profile:?}"),
                )
            })?;
            Some(Profile::from(spec))
        }
    };
    Ok(Some(WantedPeer { config, bfd }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(extra: serde_json::Value) -> BGPPeerSpec {
        let mut v =
            serde_json::json!({"peerAddress": "10.0.0.2", "peerASN": 64513, "myASN": 64512});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        serde_json::from_value(v).unwrap()
    }

    fn host() -> HostFacts {
        HostFacts {
            router_id: Some(Ipv4Addr::new(192, 0, 2, 7)),
            ..Default::default()
        }
    }

    fn node(
        annotations: serde_json::Value,
        labels: serde_json::Value,
    ) -> k8s_openapi::api::core::v1::Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1", "annotations": annotations, "labels": labels},
            "status": {"addresses": [
                {"type": "Hostname", "address": "n1"},
                {"type": "InternalIP", "address": "fd00::1"},
                {"type": "InternalIP", "address": "10.9.0.1"},
            ]},
        }))
        .unwrap()
    }

    #[test]
    fn the_router_id_is_per_node_in_the_documented_order() {
        let rid = |spec: &BGPPeerSpec, host: &HostFacts| {
            peer_config(spec, host).map(|c| c.session.router_id)
        };
        let plain = spec(serde_json::json!({}));
        // The host's own lowest address is the last resort.
        assert_eq!(rid(&plain, &host()), Ok(Ipv4Addr::new(192, 0, 2, 7)));
        // The Node's InternalIP before it.
        let mut h = host();
        h.set_node(&node(serde_json::json!({}), serde_json::json!({})));
        assert_eq!(rid(&plain, &h), Ok(Ipv4Addr::new(10, 9, 0, 1)));
        // The kernel's source address towards the peer before that.
        h.route_source = Some(|_| Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        assert_eq!(rid(&plain, &h), Ok(Ipv4Addr::new(10, 0, 0, 1)));
        // An IPv6 source says nothing: the InternalIP again.
        h.route_source = Some(|_| Some("fd00::9".parse().unwrap()));
        assert_eq!(rid(&plain, &h), Ok(Ipv4Addr::new(10, 9, 0, 1)));
        // spec.routerID before the derived ones, the Node annotation before everything.
        let fixed = spec(serde_json::json!({"routerID": "198.51.100.9"}));
        assert_eq!(rid(&fixed, &h), Ok(Ipv4Addr::new(198, 51, 100, 9)));
        h.set_node(&node(
            serde_json::json!({"herald.dev/router-id": "10.255.0.1"}),
            serde_json::json!({}),
        ));
        assert_eq!(rid(&fixed, &h), Ok(Ipv4Addr::new(10, 255, 0, 1)));
        // A bad annotation is an error naming it, not a silent fallback.
        h.set_node(&node(
            serde_json::json!({"herald.dev/router-id": "rack-7"}),
            serde_json::json!({}),
        ));
        let e = rid(&fixed, &h).unwrap_err().to_string();
        assert!(
            e.contains("herald.dev/router-id") && e.contains("rack-7"),
            "{e}"
        );
    }

    #[test]
    fn the_other_familys_next_hop_comes_from_the_sessions_interface_then_the_node() {
        let nh = |peer: &str, host: &HostFacts| {
            let c = peer_config(&spec(serde_json::json!({"peerAddress": peer})), host).unwrap();
            (c.session.next_hop_v4, c.session.next_hop_v6)
        };
        let mut h = host();
        // Nothing known: an IPv4 session has no IPv6 next hop (never an IPv4-mapped one).
        assert_eq!(nh("10.0.0.2", &h), (None, None));
        // The Node's IPv6 InternalIP.
        h.set_node(&node(serde_json::json!({}), serde_json::json!({})));
        assert_eq!(nh("10.0.0.2", &h), (None, Some("fd00::1".parse().unwrap())));
        // An IPv6 address on the session's own interface first.
        h.route_source = Some(|_| Some("10.0.0.1".parse().unwrap()));
        h.sibling_address = Some(|local| match local {
            IpAddr::V4(_) => Some("2001:db8:1::5".parse().unwrap()),
            IpAddr::V6(_) => Some("10.0.0.1".parse().unwrap()),
        });
        assert_eq!(
            nh("10.0.0.2", &h),
            (None, Some("2001:db8:1::5".parse().unwrap()))
        );
        // And an IPv4 one for IPv4 routes on an IPv6 session.
        h.route_source = Some(|_| Some("2001:db8:1::5".parse().unwrap()));
        assert_eq!(
            nh("2001:db8:1::2", &h),
            (Some(Ipv4Addr::new(10, 0, 0, 1)), None)
        );
    }

    #[test]
    fn ttl_security_hops_turn_on_gtsm_and_dual_stack_can_be_switched_off() {
        let c = peer_config(&spec(serde_json::json!({"ttlSecurityHops": 2})), &host()).unwrap();
        assert!(c.gtsm);
        assert_eq!(c.ttl, Some(2));
        assert_eq!(c.send_ttl(), 255);
        assert_eq!(c.min_ttl(), Some(254));
        let c = peer_config(&spec(serde_json::json!({})), &host()).unwrap();
        assert!(!c.gtsm);
        let mut h = host();
        h.set_node(&node(serde_json::json!({}), serde_json::json!({})));
        let both = peer_config(&spec(serde_json::json!({})), &h).unwrap();
        assert!(both.session.next_hop_v6.is_some());
        let own = peer_config(
            &spec(serde_json::json!({"dualStackAddressFamily": false})),
            &h,
        )
        .unwrap();
        assert_eq!(own.session.next_hop_v6, None);
    }

    #[test]
    fn the_asn_label_on_the_node_replaces_my_asn_for_every_session() {
        let mut h = host();
        h.set_node(&node(
            serde_json::json!({}),
            serde_json::json!({"herald.dev/asn": "64601"}),
        ));
        let c = peer_config(&spec(serde_json::json!({})), &h).unwrap();
        assert_eq!(c.session.local_asn, 64601);
        for bad in ["0", "4294967295", "rack7", "-1"] {
            h.set_node(&node(
                serde_json::json!({}),
                serde_json::json!({"herald.dev/asn": bad}),
            ));
            let e = peer_config(&spec(serde_json::json!({})), &h)
                .unwrap_err()
                .to_string();
            assert!(e.contains("herald.dev/asn") && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn a_bgp_peer_with_only_the_required_fields_gets_the_documented_defaults() {
        let c = peer_config(&spec(serde_json::json!({})), &host()).unwrap();
        assert_eq!(c.peer_addr, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(c.peer_port, 179);
        assert_eq!((c.session.local_asn, c.session.peer_asn), (64512, 64513));
        assert_eq!(c.session.router_id, Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(c.session.hold_time, 90);
        assert_eq!(c.session.keepalive, None);
        assert_eq!(c.session.connect_retry, Duration::from_secs(10));
        // Off unless asked for, as in MetalLB (`gracefulRestart`, default false).
        assert_eq!(c.session.graceful_restart, None);
        assert!(!c.session.passive);
        assert_eq!(
            (c.source_addr, c.ttl, c.password.as_deref()),
            (None, None, None)
        );
    }

    #[test]
    fn each_bgp_peer_field_reaches_the_session() {
        let c = peer_config(
            &spec(serde_json::json!({
                "peerPort": 1179, "sourceAddress": "10.0.0.1", "holdTime": "30s",
                "keepaliveTime": "5s", "connectTime": "2s", "passive": true,
                "gracefulRestart": true, "ebgpMultiHop": true, "password": "s3cret",
            })),
            &host(),
        )
        .unwrap();
        assert_eq!(c.peer_port, 1179);
        assert_eq!(c.source_addr, Some("10.0.0.1".parse().unwrap()));
        // An IPv4 source address is the router ID before the host's.
        assert_eq!(c.session.router_id, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(c.session.hold_time, 30);
        assert_eq!(c.session.keepalive, Some(5));
        assert_eq!(c.session.connect_retry, Duration::from_secs(2));
        assert!(c.session.passive);
        assert_eq!(c.session.graceful_restart, Some(120));
        assert_eq!(c.ttl, Some(255));
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        let c = peer_config(
            &spec(serde_json::json!({"routerID": "198.51.100.9", "sourceAddress": "10.0.0.1"})),
            &host(),
        )
        .unwrap();
        assert_eq!(c.session.router_id, Ipv4Addr::new(198, 51, 100, 9));
    }

    #[test]
    fn a_router_id_that_cannot_be_derived_or_an_oversized_timer_names_the_field() {
        let e = peer_config(&spec(serde_json::json!({})), &HostFacts::default()).unwrap_err();
        assert!(e.to_string().contains("spec.routerID"), "{e}");
        let e =
            peer_config(&spec(serde_json::json!({"holdTime": "100000s"})), &host()).unwrap_err();
        assert!(e.to_string().contains("spec.holdTime"), "{e}");
    }
}

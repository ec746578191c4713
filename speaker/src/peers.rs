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
use herald_api::{BGPPeer, BGPPeerSpec};
use ipnet::IpNet;
use tracing::{info, warn};

use crate::announce;
use crate::bgp::driver::{PeerConfig, PeerHandle, PeerStatus};
use crate::bgp::fsm::SessionConfig;
use crate::bgp::listener::Listener;
use crate::bgp::route::{DesiredRoutes, RouteAttrs};

/// Host facts a peer configuration may need.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// The first IPv4 address of an up, non-loopback interface: the default router ID.
    pub router_id: Option<Ipv4Addr>,
}

impl HostFacts {
    /// Reads the host's interfaces.
    pub fn read() -> Self {
        use nix::net::if_::InterfaceFlags as F;
        let router_id = nix::ifaddrs::getifaddrs().ok().and_then(|addrs| {
            addrs
                .filter(|a| a.flags.contains(F::IFF_UP) && !a.flags.contains(F::IFF_LOOPBACK))
                .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
                .min()
        });
        HostFacts { router_id }
    }
}

fn secs(field: &str, d: std::time::Duration) -> Result<u16, FieldError> {
    u16::try_from(d.as_secs()).map_err(|_| FieldError::new(field, "longer than 65535s"))
}

/// The session configuration for a `BGPPeer`.
pub fn peer_config(spec: &BGPPeerSpec, host: &HostFacts) -> Result<PeerConfig, FieldError> {
    let router_id = spec
        .router_id
        .or(match spec.source_address {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        })
        .or(host.router_id)
        .ok_or_else(|| {
            FieldError::new(
                "spec.routerID",
                "required: this host has no IPv4 address to derive a BGP identifier from",
            )
        })?;
    let mut session = SessionConfig::new(spec.my_asn, spec.peer_asn, router_id);
    if let Some(h) = &spec.hold_time {
        session.hold_time = secs("spec.holdTime", h.get())?;
    }
    if let Some(k) = &spec.keepalive_time {
        session.keepalive = Some(secs("spec.keepaliveTime", k.get())?);
    }
    if let Some(c) = &spec.connect_time {
        session.connect_retry = c.get();
    }
    session.passive = spec.passive;
    if !spec.graceful_restart {
        session.graceful_restart = None;
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

/// The running sessions, by peer object name.
#[derive(Debug, Default)]
pub struct Peers {
    running: BTreeMap<String, (PeerConfig, PeerHandle)>,
    listener: Option<Listener>,
    listen_addr: Option<SocketAddr>,
}

impl Peers {
    /// Sessions that serve passive peers listen on `listen_addr`.
    pub fn new(listen_addr: SocketAddr) -> Self {
        Peers {
            listen_addr: Some(listen_addr),
            ..Default::default()
        }
    }

    /// Brings the running sessions in line with `wanted` (peer name -> config). Returns the
    /// peers that could not be started, with why.
    pub async fn reconcile(
        &mut self,
        wanted: BTreeMap<String, PeerConfig>,
    ) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(name, (config, _))| wanted.get(*name) != Some(config))
            .map(|(name, _)| name.clone())
            .collect();
        let mut changed = !stale.is_empty();
        for name in stale {
            let (_, handle) = self.running.remove(&name).expect("listed above");
            let reason = if wanted.contains_key(&name) {
                "configuration change"
            } else {
                "peer removed from configuration"
            };
            info!(peer = %name, reason, "closing bgp session");
            handle.shutdown(reason).await;
        }
        for (name, config) in wanted {
            if self.running.contains_key(&name) {
                continue;
            }
            match PeerHandle::spawn(config.clone()) {
                Ok(handle) => {
                    info!(peer = %name, address = %config.peer_addr, "starting bgp session");
                    self.running.insert(name, (config, handle));
                    changed = true;
                }
                Err(e) => errors.push((name, e.to_string())),
            }
        }
        if changed {
            self.listener = None;
            let passive: Vec<&PeerHandle> = self
                .running
                .values()
                .filter(|(c, _)| c.session.passive)
                .map(|(_, h)| h)
                .collect();
            if let (false, Some(addr)) = (passive.is_empty(), self.listen_addr) {
                match Listener::bind(addr, &passive) {
                    Ok(l) => self.listener = Some(l),
                    Err(e) => {
                        warn!(error = %e, "cannot listen for passive bgp peers");
                        errors.push(("(listener)".into(), e.to_string()));
                    }
                }
            }
        }
        errors
    }

    /// Hands each session its whole desired route set (empty for peers without routes).
    pub fn set_routes(&self, desired: &BTreeMap<String, BTreeMap<IpNet, announce::RouteAttrs>>) {
        let empty = BTreeMap::new();
        for (name, (_, handle)) in &self.running {
            handle.set_routes(desired_routes(desired.get(name).unwrap_or(&empty)));
        }
    }

    /// Each session's status, by peer name.
    pub fn statuses(&self) -> Vec<(String, PeerStatus)> {
        self.running
            .iter()
            .map(|(n, (_, h))| (n.clone(), h.status()))
            .collect()
    }

    /// Closes every session with a Cease carrying `reason`.
    pub async fn shutdown(&mut self, reason: &str) {
        self.listener = None;
        for (name, (_, handle)) in std::mem::take(&mut self.running) {
            info!(peer = %name, "closing bgp session");
            handle.shutdown(reason).await;
        }
    }
}

/// The peers this node runs: those whose `nodeSelectors` match `node_labels`, configured.
pub fn wanted(
    peers: &[BGPPeer],
    node_labels: &BTreeMap<String, String>,
    host: &HostFacts,
) -> Result<BTreeMap<String, PeerConfig>, (String, FieldError)> {
    let mut out = BTreeMap::new();
    for p in peers {
        let name = p.metadata.name.clone().unwrap_or_default();
        let selectors: Vec<_> = p
            .spec
            .node_selectors
            .iter()
            .enumerate()
            .map(|(i, s)| {
                herald_controller::convert::selector(s, &format!("spec.nodeSelectors[{i}]"))
            })
            .collect::<Result<_, _>>()
            .map_err(|e| (name.clone(), e))?;
        if !selectors.is_empty() && !selectors.iter().any(|s| s.matches(node_labels)) {
            continue;
        }
        let config = peer_config(&p.spec, host).map_err(|e| (name.clone(), e))?;
        out.insert(name, config);
    }
    Ok(out)
}

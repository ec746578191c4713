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
use crate::bfd::driver::{BfdConfig, BfdHandle, BfdStatus, couple};
use crate::bfd::profile::Profile;
use crate::bfd::transport::Hop;
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
            let handle = match PeerHandle::spawn(config) {
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
        if changed {
            self.listener = None;
            let passive: Vec<&PeerHandle> = self
                .running
                .values()
                .filter(|r| r.wanted.config.session.passive)
                .map(|r| &r.handle)
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

    /// Closes every session with a Cease carrying `reason`.
    pub async fn shutdown(&mut self, reason: &str) {
        self.listener = None;
        for (name, running) in std::mem::take(&mut self.running) {
            info!(peer = %name, "closing bgp session");
            running.handle.shutdown(reason).await;
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
        .map(|(i, s)| herald_controller::convert::selector(s, &format!("spec.nodeSelectors[{i}]")))
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

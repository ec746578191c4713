//! Pure: the API server's objects as the engine's inputs. No client, no tokio.
//!
//! - Services and EndpointSlices are read by [`super::facts`] as they change; here only the
//!   pools' ranges their addresses are matched against.
//! - `BGPPeer.passwordSecret`: resolved into `password` from a Secret in the speaker's
//!   namespace (`--secrets-namespace`), key `password` unless named. A missing Secret or key
//!   fails **that peer only**: it is left out of the snapshot (no session, so no route and
//!   no unauthenticated session to a router that expects TCP MD5) and a [`PeerError`] names
//!   the peer and the Secret; every other object still applies. A whole-snapshot refusal
//!   would let one mistyped Secret stop every announcement of the node.

use std::net::{IpAddr, SocketAddr};

use herald_api::addresses::to_u128;
use herald_api::bgp::DEFAULT_PASSWORD_KEY;
use herald_api::standalone::StandaloneConfig;
use herald_api::{BGPPeer, IPPool};
use herald_ipam::convert;
use k8s_openapi::api::core::v1::{Node, Secret};
use thiserror::Error;

/// A BGPPeer left out of the snapshot because its password could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("BGPPeer {peer:?}: passwordSecret {namespace}/{secret}: {reason}")]
pub struct PeerError {
    /// The BGPPeer's name.
    pub peer: String,
    /// The Secret's namespace.
    pub namespace: String,
    /// The Secret's name.
    pub secret: String,
    /// What is wrong.
    pub reason: PasswordProblem,
}

/// Why a `passwordSecret` gave no password.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PasswordProblem {
    /// The reference names another namespace than the one the speakers may read.
    #[error("the speakers read Secrets only in namespace {0:?} (--secrets-namespace)")]
    OtherNamespace(String),
    /// No such Secret in the namespace.
    #[error("Secret not found")]
    SecretMissing,
    /// The Secret has no such key in `data`.
    #[error("key {0:?} not in the Secret")]
    KeyMissing(String),
    /// The value is empty, longer than 80 bytes (RFC 2385 keys) or not UTF-8.
    #[error("key {0:?}: not a usable TCP MD5 password (1 to 80 bytes of UTF-8)")]
    Unusable(String),
}

/// The engine's inputs from the cluster's objects.
#[derive(Debug, Clone, Default)]
pub struct Translated {
    /// The objects, passwords resolved, failed peers left out. Services and EndpointSlices
    /// are not among them: the watches keep their [`super::facts`] instead.
    pub objects: StandaloneConfig,
    /// The pools' ranges, for the granted addresses ([`super::facts::ServiceTable::assigned`]).
    pub pools: Vec<(String, Vec<(IpAddr, IpAddr)>)>,
    /// Peers left out, and why.
    pub peer_errors: Vec<PeerError>,
}

/// Translates the caches' content; `secrets` are the Secrets of `secrets_namespace`.
pub fn translate(
    mut objects: StandaloneConfig,
    secrets: &[Secret],
    secrets_namespace: &str,
) -> Translated {
    let pools = pool_ranges(&objects.ip_pools);
    let mut peer_errors = Vec::new();
    let peers = std::mem::take(&mut objects.bgp_peers);
    for peer in peers {
        match resolve_password(peer, secrets, secrets_namespace) {
            Ok(p) => objects.bgp_peers.push(p),
            Err(e) => peer_errors.push(e),
        }
    }
    Translated {
        objects,
        pools,
        peer_errors,
    }
}

/// Pools by name with their inclusive ranges; pools that do not convert have none.
fn pool_ranges(pools: &[IPPool]) -> Vec<(String, Vec<(IpAddr, IpAddr)>)> {
    pools
        .iter()
        .map(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            let ranges = convert::pool(p).map(|p| p.ranges).unwrap_or_default();
            (name, ranges)
        })
        .collect()
}

/// Whether `ip` is in one of `ranges` (inclusive, same family).
pub fn contains(ranges: &[(IpAddr, IpAddr)], ip: IpAddr) -> bool {
    ranges.iter().any(|(first, last)| {
        first.is_ipv4() == ip.is_ipv4()
            && to_u128(*first) <= to_u128(ip)
            && to_u128(ip) <= to_u128(*last)
    })
}

/// Fills `password` from `passwordSecret`; peers without one pass through.
pub fn resolve_password(
    mut peer: BGPPeer,
    secrets: &[Secret],
    namespace: &str,
) -> Result<BGPPeer, PeerError> {
    let Some(reference) = peer.spec.password_secret.take() else {
        return Ok(peer);
    };
    let key = reference
        .key
        .clone()
        .unwrap_or_else(|| DEFAULT_PASSWORD_KEY.to_owned());
    let fail = |reason| PeerError {
        peer: peer.metadata.name.clone().unwrap_or_default(),
        namespace: reference
            .namespace
            .clone()
            .unwrap_or_else(|| namespace.to_owned()),
        secret: reference.name.clone(),
        reason,
    };
    if reference
        .namespace
        .as_deref()
        .is_some_and(|n| n != namespace)
    {
        return Err(fail(PasswordProblem::OtherNamespace(namespace.to_owned())));
    }
    let secret = secrets
        .iter()
        .find(|s| {
            s.metadata.name.as_deref() == Some(reference.name.as_str())
                && s.metadata
                    .namespace
                    .as_deref()
                    .is_none_or(|n| n == namespace)
        })
        .ok_or_else(|| fail(PasswordProblem::SecretMissing))?;
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&key))
        .ok_or_else(|| fail(PasswordProblem::KeyMissing(key.clone())))?;
    let password = String::from_utf8(value.0.clone())
        .ok()
        .filter(|p| !p.is_empty() && p.len() <= 80)
        .ok_or_else(|| fail(PasswordProblem::Unusable(key.clone())))?;
    peer.spec.password = Some(password);
    Ok(peer)
}

/// Layer-2 gossip seeds when `--gossip-peer` is not given: every other Node's `InternalIP`
/// of the `--gossip-bind` address's family, at its port (every speaker binds the same port,
/// as the DaemonSet gives them the same flags). Sorted, without repeats.
pub fn gossip_seeds(nodes: &[Node], node_name: &str, bind: SocketAddr) -> Vec<SocketAddr> {
    let mut seeds: Vec<SocketAddr> = nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(node_name))
        .flat_map(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .into_iter()
                .flatten()
        })
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse::<IpAddr>().ok())
        .filter(|ip| ip.is_ipv4() == bind.is_ipv4())
        .map(|ip| SocketAddr::new(ip, bind.port()))
        .collect();
    seeds.sort();
    seeds.dedup();
    seeds
}

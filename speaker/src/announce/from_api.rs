//! API objects (herald.dev kinds, core `v1` Services and Nodes, `discovery.k8s.io/v1`
//! EndpointSlices) as announce's plain inputs. Used by the Kubernetes source and standalone
//! mode alike. Errors name the object and the field.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use herald_api::bgp::{parse_community, parse_large_community};
use herald_api::validate::FieldError;
use herald_api::{BGPAdvertisement, BGPPeer, IPPool, L2Advertisement};
use herald_ipam::convert::{self, ConvertError};
use k8s_openapi::api::core::v1::{Node as K8sNode, Service as K8sService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use thiserror::Error;

use super::{
    BgpAdvertisement, Config, Endpoint, L2Advertisement as L2Adv, Node, Peer, Pool, Scope,
};

/// An object that announce cannot use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind} {name:?}: {error}")]
pub struct ObjectError {
    /// The object's kind.
    pub kind: &'static str,
    /// Its name (`namespace/name` for namespaced objects).
    pub name: String,
    /// The field and what is wrong with it.
    pub error: FieldError,
}

fn selectors(
    list: &[LabelSelector],
    field: &str,
) -> Result<Vec<herald_ipam::Selector>, FieldError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| convert::selector(s, &format!("{field}[{i}]")))
        .collect()
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// Builds announce's [`Config`] from the herald.dev objects; the first object that does not
/// convert refuses the whole (standalone mode refuses the file).
pub fn config(
    pools: &[IPPool],
    peers: &[BGPPeer],
    bgp_advertisements: &[BGPAdvertisement],
    l2_advertisements: &[L2Advertisement],
) -> Result<Config, ObjectError> {
    let (config, errors) = config_partial(pools, peers, bgp_advertisements, l2_advertisements);
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(config),
    }
}

/// Builds announce's [`Config`] from the objects that convert, and the error of each that
/// does not (cluster mode leaves those out and applies the rest). Errors in input order:
/// peers, then BGP advertisements, then layer-2 advertisements.
pub fn config_partial(
    pools: &[IPPool],
    peers: &[BGPPeer],
    bgp_advertisements: &[BGPAdvertisement],
    l2_advertisements: &[L2Advertisement],
) -> (Config, Vec<ObjectError>) {
    let mut out = Config::default();
    let mut errors = Vec::new();
    for p in pools {
        out.pools.push(Pool {
            name: name_of(&p.metadata),
            labels: p.metadata.labels.clone().unwrap_or_default(),
        });
    }
    for p in peers {
        match peer(p) {
            Ok(p) => out.peers.push(p),
            Err(e) => errors.push(e),
        }
    }
    for a in bgp_advertisements {
        match bgp_advertisement(a) {
            Ok(a) => out.bgp_advertisements.push(a),
            Err(e) => errors.push(e),
        }
    }
    for a in l2_advertisements {
        match l2_advertisement(a) {
            Ok(a) => out.l2_advertisements.push(a),
            Err(e) => errors.push(e),
        }
    }
    (out, errors)
}

/// A `BGPPeer` as announce sees it (its name and node selectors).
pub fn peer(p: &BGPPeer) -> Result<Peer, ObjectError> {
    let err = |error| ObjectError {
        kind: "BGPPeer",
        name: name_of(&p.metadata),
        error,
    };
    Ok(Peer {
        name: name_of(&p.metadata),
        node_selectors: selectors(&p.spec.node_selectors, "spec.nodeSelectors").map_err(err)?,
    })
}

/// A `BGPAdvertisement` in announce's terms.
pub fn bgp_advertisement(a: &BGPAdvertisement) -> Result<BgpAdvertisement, ObjectError> {
    let err = |error| ObjectError {
        kind: "BGPAdvertisement",
        name: name_of(&a.metadata),
        error,
    };
    let s = &a.spec;
    let communities = s
        .communities
        .iter()
        .enumerate()
        .map(|(i, c)| {
            parse_community(c).map_err(|m| FieldError::new(format!("spec.communities[{i}]"), m))
        })
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let large_communities = s
        .large_communities
        .iter()
        .enumerate()
        .map(|(i, c)| {
            parse_large_community(c)
                .map_err(|m| FieldError::new(format!("spec.largeCommunities[{i}]"), m))
        })
        .collect::<Result<_, _>>()
        .map_err(err)?;
    Ok(BgpAdvertisement {
        name: name_of(&a.metadata),
        scope: scope(&s.ip_pools, &s.ip_pool_selectors, &s.node_selectors).map_err(err)?,
        peers: s.peers.clone(),
        communities,
        large_communities,
        local_pref: s.local_pref,
        aggregation_length: s.aggregation_length,
        aggregation_length_v6: s.aggregation_length_v6,
    })
}

/// An advertisement's pools and nodes, the same for both kinds.
fn scope(
    ip_pools: &[String],
    ip_pool_selectors: &[LabelSelector],
    node_selectors: &[LabelSelector],
) -> Result<Scope, FieldError> {
    Ok(Scope {
        ip_pools: ip_pools.to_vec(),
        ip_pool_selectors: selectors(ip_pool_selectors, "spec.ipPoolSelectors")?,
        node_selectors: selectors(node_selectors, "spec.nodeSelectors")?,
    })
}

/// An `L2Advertisement` in announce's terms.
pub fn l2_advertisement(a: &L2Advertisement) -> Result<L2Adv, ObjectError> {
    let err = |error| ObjectError {
        kind: "L2Advertisement",
        name: name_of(&a.metadata),
        error,
    };
    let s = &a.spec;
    Ok(L2Adv {
        name: name_of(&a.metadata),
        scope: scope(&s.ip_pools, &s.ip_pool_selectors, &s.node_selectors).map_err(err)?,
        interfaces: s.interfaces.clone(),
    })
}

/// A core `v1` Node: labels, `Ready` and `NetworkUnavailable` conditions, InternalIP
/// addresses (ExternalIP after them).
pub fn node(n: &K8sNode) -> Node {
    let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
    let condition = |t: &str| {
        conditions
            .into_iter()
            .flatten()
            .find(|c| c.type_ == t)
            .map(|c| c.status == "True")
    };
    let mut addresses: Vec<(u8, IpAddr)> = n
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let rank = match a.type_.as_str() {
                "InternalIP" => 0,
                "ExternalIP" => 1,
                _ => return None,
            };
            Some((rank, a.address.parse().ok()?))
        })
        .collect();
    addresses.sort_by_key(|(rank, _)| *rank);
    Node {
        name: name_of(&n.metadata),
        labels: n.metadata.labels.clone().unwrap_or_default(),
        // A Node object without conditions (standalone configs usually give only labels)
        // is taken as Ready: the operator listed it on purpose.
        ready: condition("Ready").unwrap_or(true),
        network_unavailable: condition("NetworkUnavailable").unwrap_or(false),
        addresses: addresses.into_iter().map(|(_, a)| a).collect(),
    }
}

/// The Service an EndpointSlice belongs to: (namespace, label `kubernetes.io/service-name`).
fn owner(slice: &EndpointSlice) -> Option<(&str, &str)> {
    let ns = slice.metadata.namespace.as_deref().unwrap_or("default");
    let name = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("kubernetes.io/service-name"))?;
    Some((ns, name.as_str()))
}

/// EndpointSlices by the Service they belong to, built once per snapshot: looking each
/// Service's slices up by scanning all of them cost N² (4 s per snapshot at 10 000 Services).
pub fn slices_by_service(
    slices: &[std::sync::Arc<EndpointSlice>],
) -> HashMap<(&str, &str), Vec<&EndpointSlice>> {
    let mut by: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        if let Some(owner) = owner(slice) {
            by.entry(owner).or_default().push(slice);
        }
    }
    by
}

/// The endpoints of the Service `namespace/name` from all EndpointSlices (label
/// `kubernetes.io/service-name`). `ready` unset counts as ready, as Kubernetes specifies.
pub fn endpoints(namespace: &str, name: &str, slices: &[EndpointSlice]) -> Vec<Endpoint> {
    endpoints_of(
        slices
            .iter()
            .filter(|s| owner(s) == Some((namespace, name))),
    )
}

/// The endpoints in `slices` (all of one Service).
pub fn endpoints_of<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for slice in slices {
        for e in &slice.endpoints {
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            for a in &e.addresses {
                if let Ok(address) = a.parse() {
                    out.push(Endpoint {
                        address,
                        node: e.node_name.clone(),
                        ready,
                    });
                }
            }
        }
    }
    out
}

/// A managed Service with its assigned addresses (and the pool of each) as announce input;
/// `by_service` from [`slices_by_service`].
pub fn service(
    svc: &K8sService,
    addresses: Vec<(IpAddr, String)>,
    by_service: &HashMap<(&str, &str), Vec<&EndpointSlice>>,
) -> Result<super::Service, ConvertError> {
    let plain = convert::service(svc, &BTreeMap::new())?;
    let endpoints = by_service
        .get(&(plain.key.namespace(), plain.key.name()))
        .map(|slices| endpoints_of(slices.iter().copied()))
        .unwrap_or_default();
    Ok(super::Service {
        key: plain.key.to_string(),
        addresses,
        ports: plain.ports,
        traffic_policy: plain.traffic_policy,
        endpoints,
    })
}

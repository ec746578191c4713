//! From API objects to the allocator's plain inputs.
//!
//! The Kubernetes reconciler and standalone mode read the same objects (`herald.dev`
//! kinds, core `v1` Services), so both convert them here, once. Pure: no client, no I/O.
//! Errors name the object and the field, as a user would look them up.

use std::collections::BTreeMap;
use std::net::IpAddr;

use herald_api::annotations::lb_request;
use herald_api::pool::IPPool;
use herald_api::validate::{FieldError, pool_ranges};
use k8s_openapi::api::core::v1::Service as K8sService;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use thiserror::Error;

use crate::{
    AllocateTo, Family, FamilyPolicy, Operator, Pool, Protocol, Requirement, Selector, Service,
    ServiceKey, TrafficPolicy,
};

/// The `spec.loadBalancerClass` Herald serves unless told otherwise (`--lb-class`).
pub const DEFAULT_LB_CLASS: &str = "herald.dev/lb";

/// An object that cannot be turned into allocator input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConvertError {
    /// An `IPPool` with an invalid field.
    #[error("IPPool {pool:?}: {error}")]
    Pool {
        /// The pool's name.
        pool: String,
        /// The field and what is wrong with it.
        error: FieldError,
    },
    /// A Service with an invalid field or annotation.
    #[error("Service {service}: {error}")]
    Service {
        /// `namespace/name`.
        service: String,
        /// The field and what is wrong with it.
        error: FieldError,
    },
}

/// A `metav1.LabelSelector` as the allocator's [`Selector`]. `field` prefixes error fields.
pub fn selector(s: &LabelSelector, field: &str) -> Result<Selector, FieldError> {
    let mut out = Selector {
        match_labels: s.match_labels.clone().unwrap_or_default(),
        match_expressions: Vec::new(),
    };
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        let operator = match e.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => {
                return Err(FieldError::new(
                    format!("{field}.matchExpressions[{i}].operator"),
                    format!("unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)"),
                ));
            }
        };
        out.match_expressions.push(Requirement {
            key: e.key.clone(),
            operator,
            values: e.values.clone().unwrap_or_default(),
        });
    }
    Ok(out)
}

/// An `IPPool` as an allocator [`Pool`].
pub fn pool(p: &IPPool) -> Result<Pool, ConvertError> {
    let name = p.metadata.name.clone().unwrap_or_default();
    let err = |error: FieldError| ConvertError::Pool {
        pool: name.clone(),
        error,
    };
    let ranges = pool_ranges(&p.spec)
        .map_err(|errors| err(errors.into_iter().next().expect("errors are never empty")))?
        .into_iter()
        .map(|r| (r.start, r.end))
        .collect();
    let mut allocate_to = AllocateTo::default();
    if let Some(to) = &p.spec.allocate_to {
        allocate_to.priority = to.priority;
        allocate_to.namespaces = to.namespaces.clone();
        for (i, s) in to.namespace_selectors.iter().enumerate() {
            let field = format!("spec.allocateTo.namespaceSelectors[{i}]");
            allocate_to
                .namespace_selectors
                .push(selector(s, &field).map_err(err)?);
        }
        for (i, s) in to.service_selectors.iter().enumerate() {
            let field = format!("spec.allocateTo.serviceSelectors[{i}]");
            allocate_to
                .service_selectors
                .push(selector(s, &field).map_err(err)?);
        }
    }
    Ok(Pool {
        name: name.clone(),
        ranges,
        auto_assign: p.spec.auto_assign,
        avoid_buggy_ips: p.spec.avoid_buggy_ips,
        disabled: p.spec.disabled,
        allocate_to,
    })
}

/// Which `spec.loadBalancerClass` values Herald handles (`--lb-class`,
/// `--lb-class-exclusive`).
///
/// Shared (the default): Services of the class and Services without a class. Exclusive:
/// only Services of the class, so that Herald runs beside another load balancer (the
/// cluster's default one) that takes the class-less Services, as MetalLB does with its
/// `--lb-class`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbClass {
    /// The class served (`--lb-class`).
    pub name: String,
    /// Whether Services without a class are left to another load balancer.
    pub exclusive: bool,
}

impl LbClass {
    /// `name` and Services without a class.
    pub fn shared(name: impl Into<String>) -> Self {
        LbClass {
            name: name.into(),
            exclusive: false,
        }
    }

    /// `name` only.
    pub fn exclusive(name: impl Into<String>) -> Self {
        LbClass {
            name: name.into(),
            exclusive: true,
        }
    }

    /// Whether a Service with `spec.loadBalancerClass` `class` is Herald's.
    pub fn handles(&self, class: Option<&str>) -> bool {
        match class {
            None => !self.exclusive,
            Some(c) => c == self.name,
        }
    }
}

impl Default for LbClass {
    fn default() -> Self {
        LbClass::shared(DEFAULT_LB_CLASS)
    }
}

/// Whether Herald handles this Service: `type: LoadBalancer`, and a
/// `spec.loadBalancerClass` that `lb_class` handles ([`LbClass::handles`]).
pub fn is_managed(svc: &K8sService, lb_class: &LbClass) -> bool {
    svc.spec.as_ref().is_some_and(|spec| {
        spec.type_.as_deref() == Some("LoadBalancer")
            && lb_class.handles(spec.load_balancer_class.as_deref())
    })
}

/// The canonical form of a pod selector: `k=v` pairs sorted by key, comma-separated. Two
/// Services with equal keys select the same pods.
pub fn backend_key(pod_selector: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = pod_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.join(",")
}

/// A core `v1` Service as allocator input. `namespace_labels` are the labels of its
/// namespace. `current` is read from `status.loadBalancer.ingress[].ip`.
pub fn service(
    svc: &K8sService,
    namespace_labels: &BTreeMap<String, String>,
) -> Result<Service, ConvertError> {
    let namespace = svc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let name = svc.metadata.name.clone().unwrap_or_default();
    let err = |error: FieldError| ConvertError::Service {
        service: format!("{namespace}/{name}"),
        error,
    };
    let spec = svc.spec.clone().unwrap_or_default();
    let annotations = svc.metadata.annotations.clone().unwrap_or_default();
    let request = lb_request(&annotations, spec.load_balancer_ip.as_deref()).map_err(err)?;

    let mut out = Service::new(ServiceKey::new(namespace.clone(), name.clone()));
    out.labels = svc.metadata.labels.clone().unwrap_or_default();
    out.namespace_labels = namespace_labels.clone();
    out.requested_ips = request.addresses;
    out.requested_pools = request.pools;
    out.sharing_key = request.sharing_key;
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        let protocol = match port.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            other => {
                return Err(err(FieldError::new(
                    format!("spec.ports[{i}].protocol"),
                    format!("unknown protocol {other:?} (TCP, UDP, SCTP)"),
                )));
            }
        };
        let number = u16::try_from(port.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                err(FieldError::new(
                    format!("spec.ports[{i}].port"),
                    format!("{} is not a port number (1-65535)", port.port),
                ))
            })?;
        out.ports.push((protocol, number));
    }
    out.traffic_policy = match spec.external_traffic_policy.as_deref() {
        None | Some("Cluster") => TrafficPolicy::Cluster,
        Some("Local") => TrafficPolicy::Local,
        Some(other) => {
            return Err(err(FieldError::new(
                "spec.externalTrafficPolicy",
                format!("unknown policy {other:?} (Cluster, Local)"),
            )));
        }
    };
    out.backend_key = backend_key(&spec.selector.clone().unwrap_or_default());
    for (i, family) in spec.ip_families.iter().flatten().enumerate() {
        out.ip_families.push(match family.as_str() {
            "IPv4" => Family::V4,
            "IPv6" => Family::V6,
            other => {
                return Err(err(FieldError::new(
                    format!("spec.ipFamilies[{i}]"),
                    format!("unknown family {other:?} (IPv4, IPv6)"),
                )));
            }
        });
    }
    out.family_policy = match spec.ip_family_policy.as_deref() {
        None | Some("SingleStack") => FamilyPolicy::SingleStack,
        Some("PreferDualStack") => FamilyPolicy::PreferDualStack,
        Some("RequireDualStack") => FamilyPolicy::RequireDualStack,
        Some(other) => {
            return Err(err(FieldError::new(
                "spec.ipFamilyPolicy",
                format!(
                    "unknown policy {other:?} (SingleStack, PreferDualStack, RequireDualStack)"
                ),
            )));
        }
    };
    if out.ip_families.is_empty() {
        // Without ipFamilies the API server defaults to the cluster's primary family; for a
        // dual-stack request, the family of a requested address decides, else IPv4 first.
        let first = out
            .requested_ips
            .first()
            .map_or(Family::V4, |a| Family::of(*a));
        out.ip_families.push(first);
        if out.family_policy != FamilyPolicy::SingleStack {
            out.ip_families.push(first.other());
        }
    }
    out.current = ingress_ips(svc);
    Ok(out)
}

/// The addresses in `status.loadBalancer.ingress[].ip`, in order; hostnames and addresses
/// that do not parse left out.
pub fn ingress_ips(svc: &K8sService) -> Vec<IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ingress| ingress.ip.as_deref()?.parse::<IpAddr>().ok())
        .collect()
}

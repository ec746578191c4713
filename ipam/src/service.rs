//! What the allocator needs to know about a Service, as plain data.
//!
//! The Kubernetes glue converts a `v1.Service` (plus its namespace's labels and the
//! annotations listed in DESIGN §3) into a [`Service`]; nothing here knows Kubernetes.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The other family.
    pub fn other(self) -> Self {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }

    /// Index into per-family arrays: 0 for IPv4, 1 for IPv6.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// An address as its family and its bits (IPv4 in the low 32 bits).
pub(crate) fn split(addr: IpAddr) -> (Family, u128) {
    match addr {
        IpAddr::V4(a) => (Family::V4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (Family::V6, u128::from(a)),
    }
}

/// The inverse of [`split`].
pub(crate) fn join(family: Family, bits: u128) -> IpAddr {
    match family {
        // Truncation is exact: IPv4 bits never exceed u32 (they come from `split`).
        Family::V4 => IpAddr::V4(Ipv4Addr::from(bits as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(bits)),
    }
}

/// A transport protocol of a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// `spec.externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TrafficPolicy {
    /// Any node forwards to any endpoint.
    #[default]
    Cluster,
    /// Only nodes with a local endpoint serve; sharing then needs identical backends.
    Local,
}

/// `spec.ipFamilyPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FamilyPolicy {
    /// One address, of the first family in `ip_families`.
    #[default]
    SingleStack,
    /// One address per listed family, as far as pools allow; at least one.
    PreferDualStack,
    /// One address of each family, or nothing.
    RequireDualStack,
}

/// Identifies a Service: `namespace/name`.
///
/// Cheap to clone (one reference count), to hash and to compare: the hash is computed once,
/// at construction, and kept inline next to the pointer, so hashing and most comparisons do
/// not even touch the strings. The allocator keys its index by it.
#[derive(Clone)]
pub struct ServiceKey {
    hash: u64,
    names: Arc<(Box<str>, Box<str>)>,
}

impl ServiceKey {
    /// The key of Service `name` in `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        let namespace: Box<str> = namespace.into().into_boxed_str();
        let name: Box<str> = name.into().into_boxed_str();
        // FNV-1a over "namespace\0name", then a 64-bit finaliser so that both halves of the
        // result are well mixed (hashbrown uses the top bits as tags, the low bits as index).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in namespace.bytes().chain([0]).chain(name.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        ServiceKey {
            hash: crate::hash::mix64(h),
            names: Arc::new((namespace, name)),
        }
    }

    /// The hash computed at construction.
    pub(crate) fn hash_u64(&self) -> u64 {
        self.hash
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.names.0
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.names.1
    }
}

impl PartialEq for ServiceKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && (Arc::ptr_eq(&self.names, &other.names) || self.names == other.names)
    }
}

impl Eq for ServiceKey {}

impl Hash for ServiceKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for ServiceKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ServiceKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.namespace(), self.name()).cmp(&(other.namespace(), other.name()))
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace(), self.name())
    }
}

impl fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceKey({self})")
    }
}

/// A `type: LoadBalancer` Service as the allocator sees it.
///
/// Fields fall in three groups, and the allocator treats them differently (see the module
/// docs, *Moves*):
/// - the **request**: `requested_ips`, `requested_pools`, `sharing_key`, `ports`,
///   `traffic_policy`, `backend_key`, `ip_families`, `family_policy`. When the request
///   changes, addresses it no longer fits are released and replaced.
/// - the **context**: `labels`, `namespace_labels`. When only they change, an address that
///   stops fitting is reported as a conflict and kept, never moved.
/// - `current`: what the Service's status holds now; read by restore only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// `namespace/name`.
    pub key: ServiceKey,
    /// The Service's labels (matched by pools' service selectors).
    pub labels: BTreeMap<String, String>,
    /// The labels of the Service's namespace (matched by pools' namespace selectors).
    pub namespace_labels: BTreeMap<String, String>,
    /// Addresses asked for explicitly, at most one per family.
    pub requested_ips: Vec<IpAddr>,
    /// Pools asked for by name, in order of preference; empty = any auto-assign pool.
    pub requested_pools: Vec<String>,
    /// Services with the same key may share an address (DESIGN §3).
    pub sharing_key: Option<String>,
    /// Ports the Service exposes.
    pub ports: Vec<(Protocol, u16)>,
    /// `spec.externalTrafficPolicy`.
    pub traffic_policy: TrafficPolicy,
    /// Canonical form of the Service's pod selector; equal keys select the same pods.
    pub backend_key: String,
    /// `spec.ipFamilies`, primary first; empty means `[IPv4]`.
    pub ip_families: Vec<Family>,
    /// `spec.ipFamilyPolicy`.
    pub family_policy: FamilyPolicy,
    /// The addresses in the Service's status now.
    pub current: Vec<IpAddr>,
}

impl Service {
    /// A single-stack IPv4 Service with no ports, labels, requests or sharing key.
    pub fn new(key: ServiceKey) -> Self {
        Service {
            key,
            labels: BTreeMap::new(),
            namespace_labels: BTreeMap::new(),
            requested_ips: Vec::new(),
            requested_pools: Vec::new(),
            sharing_key: None,
            ports: Vec::new(),
            traffic_policy: TrafficPolicy::Cluster,
            backend_key: String::new(),
            ip_families: Vec::new(),
            family_policy: FamilyPolicy::SingleStack,
            current: Vec::new(),
        }
    }
}

/// A Service as the allocator stores it: the same facts as [`Service`] minus `current`,
/// packed so that a record costs less than half of a `Service`. Fields that are usually
/// empty (requests, labels) live behind one optional box. Converting moves the heap parts
/// (no copy when the vectors and strings are exactly sized, as freshly built ones are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    pub key: ServiceKey,
    pub ports: Box<[(Protocol, u16)]>,
    pub backend_key: Box<str>,
    /// Kept boxed rather than packed: re-using the caller's allocation is cheaper than
    /// freeing it.
    pub ip_families: Box<[Family]>,
    pub traffic_policy: TrafficPolicy,
    pub family_policy: FamilyPolicy,
    extra: Option<Box<Extra>>,
}

/// The usually empty parts of a [`Spec`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Extra {
    sharing_key: Option<Box<str>>,
    requested_ips: Vec<IpAddr>,
    requested_pools: Vec<String>,
    labels: BTreeMap<String, String>,
    namespace_labels: BTreeMap<String, String>,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl From<Service> for Spec {
    fn from(s: Service) -> Self {
        let Service {
            key,
            labels,
            namespace_labels,
            requested_ips,
            requested_pools,
            sharing_key,
            ports,
            traffic_policy,
            backend_key,
            ip_families,
            family_policy,
            current: _,
        } = s;
        let extra = if sharing_key.is_none()
            && requested_ips.is_empty()
            && requested_pools.is_empty()
            && labels.is_empty()
            && namespace_labels.is_empty()
        {
            // Empty maps own no memory, so forgetting them leaks nothing; it skips
            // BTreeMap's drop walk, a measurable share of assigning a plain Service.
            std::mem::forget(labels);
            std::mem::forget(namespace_labels);
            None
        } else {
            Some(Box::new(Extra {
                sharing_key: sharing_key.map(String::into_boxed_str),
                requested_ips,
                requested_pools,
                labels,
                namespace_labels,
            }))
        };
        Spec {
            key,
            ports: ports.into_boxed_slice(),
            backend_key: backend_key.into_boxed_str(),
            ip_families: ip_families.into_boxed_slice(),
            traffic_policy,
            family_policy,
            extra,
        }
    }
}

impl Spec {
    /// The sharing key.
    pub fn sharing_key(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|e| e.sharing_key.as_deref())
    }

    /// `requested_ips`.
    pub fn requested_ips(&self) -> &[IpAddr] {
        self.extra.as_ref().map_or(&[], |e| &e.requested_ips)
    }

    /// `requested_pools`.
    pub fn requested_pools(&self) -> &[String] {
        self.extra.as_ref().map_or(&[], |e| &e.requested_pools)
    }

    /// The Service's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.extra.as_ref().map_or(&NO_LABELS, |e| &e.labels)
    }

    /// The Service's namespace's labels.
    pub fn namespace_labels(&self) -> &BTreeMap<String, String> {
        self.extra
            .as_ref()
            .map_or(&NO_LABELS, |e| &e.namespace_labels)
    }

    /// Whether the request fields are equal.
    pub fn same_request(&self, other: &Spec) -> bool {
        self.requested_ips() == other.requested_ips()
            && self.requested_pools() == other.requested_pools()
            && self.sharing_key() == other.sharing_key()
            && self.ports == other.ports
            && self.traffic_policy == other.traffic_policy
            && self.backend_key == other.backend_key
            && self.ip_families == other.ip_families
            && self.family_policy == other.family_policy
    }

    /// Whether the context fields are equal.
    pub fn same_context(&self, other: &Spec) -> bool {
        self.labels() == other.labels() && self.namespace_labels() == other.namespace_labels()
    }

    /// The families this Service wants an address of, primary first.
    pub fn wanted(&self) -> Wanted {
        let primary = self.ip_families.first().copied().unwrap_or(Family::V4);
        let second = match self.family_policy {
            FamilyPolicy::SingleStack => None,
            FamilyPolicy::PreferDualStack => {
                self.ip_families.iter().copied().find(|f| *f != primary)
            }
            FamilyPolicy::RequireDualStack => Some(primary.other()),
        };
        Wanted { primary, second }
    }
}

/// The families a Service wants, primary first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted {
    pub primary: Family,
    pub second: Option<Family>,
}

impl Wanted {
    pub fn iter(self) -> impl Iterator<Item = Family> {
        std::iter::once(self.primary).chain(self.second)
    }

    pub fn contains(self, family: Family) -> bool {
        self.primary == family || self.second == Some(family)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_field_counts_as_a_request_change_and_labels_as_context() {
        let base = || {
            let mut s = Service::new(ServiceKey::new("ns", "svc"));
            s.ports = vec![(Protocol::Tcp, 80)];
            s
        };
        type Edit = fn(&mut Service);
        let request_edits: [(&str, Edit); 8] = [
            ("requested_ips", |s| {
                s.requested_ips = vec!["10.0.0.1".parse().unwrap()]
            }),
            ("requested_pools", |s| s.requested_pools = vec!["p".into()]),
            ("sharing_key", |s| s.sharing_key = Some("k".into())),
            ("ports", |s| s.ports.push((Protocol::Udp, 53))),
            ("traffic_policy", |s| {
                s.traffic_policy = TrafficPolicy::Local
            }),
            ("backend_key", |s| s.backend_key = "app=x".into()),
            ("ip_families", |s| s.ip_families = vec![Family::V6]),
            ("family_policy", |s| {
                s.family_policy = FamilyPolicy::PreferDualStack
            }),
        ];
        let plain = Spec::from(base());
        for (name, edit) in request_edits {
            let mut s = base();
            edit(&mut s);
            let s = Spec::from(s);
            assert!(!plain.same_request(&s), "{name} is part of the request");
            assert!(plain.same_context(&s), "{name} is not context");
        }
        let context_edits: [(&str, Edit); 3] = [
            ("labels", |s| {
                s.labels.insert("a".into(), "b".into());
            }),
            ("namespace_labels", |s| {
                s.namespace_labels.insert("a".into(), "b".into());
            }),
            ("current", |s| s.current = vec!["10.0.0.1".parse().unwrap()]),
        ];
        for (name, edit) in context_edits {
            let mut s = base();
            edit(&mut s);
            let s = Spec::from(s);
            assert!(plain.same_request(&s), "{name} is not part of the request");
            assert_eq!(plain.same_context(&s), name == "current", "{name}");
        }
    }
}

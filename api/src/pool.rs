//! `IPPool`: the addresses Herald hands out to LoadBalancer Services.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::schema;

/// A pool of addresses for `type: LoadBalancer` Services.
///
/// Cluster-scoped. A Service gets an address from a pool that it names with the
/// `herald.dev/pool` annotation, or else from the auto-assign pools whose `allocateTo`
/// admits it, in priority order.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "IPPool",
    doc = "A pool of addresses that Herald hands out to Services of type LoadBalancer.",
    plural = "ippools",
    shortname = "ipp",
    category = "herald",
    status = "IPPoolStatus",
    printcolumn = r#"{"name":"Addresses","type":"string","jsonPath":".spec.addresses"}"#,
    printcolumn = r#"{"name":"Auto","type":"boolean","jsonPath":".spec.autoAssign"}"#,
    printcolumn = r#"{"name":"Assigned v4","type":"integer","jsonPath":".status.assignedIPv4"}"#,
    printcolumn = r#"{"name":"Available v4","type":"integer","jsonPath":".status.availableIPv4"}"#,
    printcolumn = r#"{"name":"Assigned v6","type":"integer","jsonPath":".status.assignedIPv6"}"#,
    printcolumn = r#"{"name":"Available v6","type":"string","jsonPath":".status.availableIPv6"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolSpec {
    /// Addresses to hand out: CIDRs (`192.0.2.0/24`, `2001:db8:1::/64`), ranges of one
    /// family (`192.0.2.10-192.0.2.20`) or single addresses; IPv4 and IPv6 may be mixed.
    /// Entries must not overlap each other or another pool's.
    #[schemars(schema_with = "schema::addresses")]
    pub addresses: Vec<String>,

    /// Whether Services that ask for no particular pool or address may get addresses from
    /// this pool. With `false`, only Services that name the pool or request one of its
    /// addresses get one. Default `true`.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub auto_assign: bool,

    /// Never hand out IPv4 addresses ending in `.0` or `.255`, which some old or buggy
    /// client stacks drop as broadcast addresses. Default `false`.
    #[serde(
        rename = "avoidBuggyIPs",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub avoid_buggy_ips: bool,

    /// Restricts which Services may use the pool and how it ranks against other pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocate_to: Option<AllocateTo>,

    /// Stops the pool from handing out new addresses. Services that already hold one of its
    /// addresses keep it. Default `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

/// Which Services a pool serves, and its rank among the pools that serve a Service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AllocateTo {
    /// Rank of the pool: lower numbers are tried first; pools without a priority come after
    /// all pools with one; ties are broken by pool name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub priority: Option<i32>,

    /// Namespaces whose Services may use the pool. Together with `namespaceSelectors`: a
    /// Service's namespace must be listed or match a selector. Both empty: any namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub namespaces: Vec<String>,

    /// Label selectors on Namespace objects whose Services may use the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub namespace_selectors: Vec<LabelSelector>,

    /// Label selectors on Services; when set, a Service must match one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub service_selectors: Vec<LabelSelector>,
}

/// What the controller reports about a pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolStatus {
    /// IPv4 addresses of the pool held by at least one Service (a shared address counts once).
    #[serde(rename = "assignedIPv4", default)]
    pub assigned_ipv4: u64,
    /// IPv4 addresses still free to hand out (`.0`/`.255` excluded with `avoidBuggyIPs`).
    #[serde(rename = "availableIPv4", default)]
    pub available_ipv4: u64,
    /// IPv6 addresses of the pool held by at least one Service.
    #[serde(rename = "assignedIPv6", default)]
    pub assigned_ipv6: u64,
    /// IPv6 addresses still free, as a decimal string: a /48 holds more than an integer
    /// field can, and the count is exact.
    #[serde(rename = "availableIPv6", default)]
    pub available_ipv6: String,
    /// `Ready` (the pool is valid and in use) and `Conflicting` (Services hold addresses the
    /// pool no longer contains) conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

pub(crate) fn default_true() -> bool {
    true
}

pub(crate) fn is_true(b: &bool) -> bool {
    *b
}

/// Labels as Kubernetes objects carry them.
pub type Labels = BTreeMap<String, String>;

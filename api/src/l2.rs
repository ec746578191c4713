//! `L2Advertisement`: which pools are answered for with ARP/NDP, on which interfaces.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Announce the addresses of some pools on a shared layer-2 segment.
///
/// Cluster-scoped. For each address one eligible node answers ARP (IPv4) and NDP (IPv6)
/// requests; another takes over when it fails.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "L2Advertisement",
    doc = "Which pools Herald answers ARP and NDP for, on which interfaces and nodes.",
    plural = "l2advertisements",
    category = "herald",
    status = "crate::status::ObjectStatus",
    printcolumn = r#"{"name":"Pools","type":"string","jsonPath":".spec.ipPools"}"#,
    printcolumn = r#"{"name":"Interfaces","type":"string","jsonPath":".spec.interfaces"}"#,
    printcolumn = r#"{"name":"Valid","type":"string","jsonPath":".status.conditions[?(@.type==\"Valid\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Names of the pools to answer for. With `ipPoolSelectors`: a pool is announced when it
    /// is named or matches a selector. Both empty: all pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub ip_pools: Vec<String>,

    /// Label selectors on `IPPool` objects to answer for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub ip_pool_selectors: Vec<LabelSelector>,

    /// Interfaces to answer on: names or patterns (`*` any run of characters, `?` one
    /// character), e.g. `eth0`, `enp*`, `bond?`. Empty: every interface that is up with
    /// carrier, is Ethernet and is not a loopback, except pod and CNI interfaces: those named
    /// like `veth*`, `cni*`, `cali*`, `lxc*`, `cilium*`, `flannel*`, `docker*`, `vxlan*`,
    /// `genev*`, `tunl*`, `weave*`, `kube-ipvs*`, `kube-bridge`, `nodelocaldns*` and the others
    /// listed in docs/reference/layer2.md. A pattern that names one of those selects it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(length(min = 1, max = 15), regex(pattern = r"^[^/\s:]+$"))
    )]
    pub interfaces: Vec<String>,

    /// Nodes that may answer. Empty: all nodes (subject to node exclusion and
    /// `externalTrafficPolicy: Local`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub node_selectors: Vec<LabelSelector>,
}

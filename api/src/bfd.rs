//! `BFDProfile`: timers for BFD sessions (RFC 5880) that `BGPPeer.bfdProfile` names.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Default receive and transmit interval in milliseconds.
pub const DEFAULT_INTERVAL_MS: u32 = 300;
/// Default detection multiplier.
pub const DEFAULT_DETECT_MULTIPLIER: u32 = 3;
/// Default minimum incoming TTL for multihop sessions.
pub const DEFAULT_MINIMUM_TTL: u32 = 254;

/// BFD timers for the sessions that run alongside BGP sessions.
///
/// Cluster-scoped. The detection time is the peer's detect multiplier times the slower of
/// our receive interval and the peer's transmit interval (RFC 5880 §6.8.4).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "BFDProfile",
    doc = "BFD timers for the sessions that run alongside BGP sessions.",
    plural = "bfdprofiles",
    category = "herald",
    status = "crate::status::ObjectStatus",
    printcolumn = r#"{"name":"Rx ms","type":"integer","jsonPath":".spec.receiveInterval"}"#,
    printcolumn = r#"{"name":"Tx ms","type":"integer","jsonPath":".spec.transmitInterval"}"#,
    printcolumn = r#"{"name":"Multiplier","type":"integer","jsonPath":".spec.detectMultiplier"}"#,
    printcolumn = r#"{"name":"Valid","type":"string","jsonPath":".status.conditions[?(@.type==\"Valid\")].status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BFDProfileSpec {
    /// Slowest rate, in milliseconds, at which we want to receive control packets,
    /// 10-60000. Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub receive_interval: Option<u32>,

    /// Fastest rate, in milliseconds, at which we want to send control packets, 10-60000.
    /// Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub transmit_interval: Option<u32>,

    /// Packets the peer may miss before the session goes down, 2-255. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 255))]
    pub detect_multiplier: Option<u32>,

    /// Wait for the peer's first packet before sending (RFC 5880 §6.1). Default `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passive_mode: bool,

    /// Lowest TTL accepted on multihop sessions, 1-254 (single-hop sessions always require
    /// 255, RFC 5881 §5). Default 254.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 254))]
    pub minimum_ttl: Option<u32>,
}

impl BFDProfileSpec {
    /// Receive interval with the default applied, in milliseconds.
    pub fn receive_interval_ms(&self) -> u32 {
        self.receive_interval.unwrap_or(DEFAULT_INTERVAL_MS)
    }

    /// Transmit interval with the default applied, in milliseconds.
    pub fn transmit_interval_ms(&self) -> u32 {
        self.transmit_interval.unwrap_or(DEFAULT_INTERVAL_MS)
    }

    /// Detection multiplier with the default applied.
    pub fn detect_multiplier_or_default(&self) -> u32 {
        self.detect_multiplier.unwrap_or(DEFAULT_DETECT_MULTIPLIER)
    }

    /// Minimum multihop TTL with the default applied.
    pub fn minimum_ttl_or_default(&self) -> u32 {
        self.minimum_ttl.unwrap_or(DEFAULT_MINIMUM_TTL)
    }
}

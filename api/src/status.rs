//! The status of the configuration kinds (`BGPPeer`, `BGPAdvertisement`, `L2Advertisement`,
//! `BFDProfile`): one `Valid` condition written by the controller from its checks across
//! objects (references to absent pools, peers and profiles) and of each object's fields.
//! `IPPool` has its own status (counts, `Ready`, `Conflicting`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The type of the condition that says whether an object is usable as written.
pub const VALID: &str = "Valid";

/// Status of a configuration object.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// `Valid`: `True` when every field and every object it names are usable; `False` with
    /// reason `MissingReference` (it names an object that does not exist) or `Invalid` (a
    /// field the schema cannot check), the message naming the field and the other object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

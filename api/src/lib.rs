//! herald-api: the `herald.dev/v1alpha1` API, shared by the controller and the speaker.
//!
//! # Layout
//! - [`pool`], [`bgp`], [`bfd`], [`l2`]: the custom resources (`IPPool`, `BGPPeer`,
//!   `BGPAdvertisement`, `BFDProfile`, `L2Advertisement`). Doc comments become the CRD
//!   field descriptions; [`schema`] adds what derive macros cannot say (address syntax, CEL).
//! - [`addresses`], [`duration`]: parsing of address ranges and Kubernetes durations.
//! - [`annotations`]: Service annotation keys, Herald's own and those accepted from MetalLB
//!   and OpenELB, and how a Service's requests are read from them.
//! - [`node`]: `HeraldNode`, each node's speaker reporting its sessions and announcements.
//! - [`status`]: the `Valid` condition of the configuration kinds.
//! - [`validate`]: the checks CEL cannot make server-side, with errors naming the field, and
//!   the checks across objects (overlapping pools, references to absent objects).
//! - [`standalone`]: the loader for standalone mode's YAML files.
//! - [`crds`]: the CustomResourceDefinitions as `crdgen` writes them to `deploy/crds/`.
//!
//! No I/O beyond reading configuration files.

pub mod addresses;
pub mod annotations;
pub mod bfd;
pub mod bgp;
pub mod crds;
pub mod duration;
pub mod l2;
pub mod node;
pub mod pool;
pub mod schema;
pub mod standalone;
pub mod status;
pub mod validate;

pub use bfd::{BFDProfile, BFDProfileSpec};
pub use bgp::{
    BGPAdvertisement, BGPAdvertisementSpec, BGPPeer, BGPPeerSpec, BGPPeerStatus, PeerSession,
    SecretKeyRef,
};
pub use l2::{L2Advertisement, L2AdvertisementSpec};
pub use node::{HeraldNode, HeraldNodeSpec, HeraldNodeStatus};
pub use pool::{AllocateTo, IPPool, IPPoolSpec, IPPoolStatus};

/// The API group of Herald's resources.
pub const GROUP: &str = "herald.dev";
/// The API version of Herald's resources.
pub const VERSION: &str = "v1alpha1";

//! What the report is built from: every object of each kind the command reads, or why the
//! API server would not list that kind.

use herald_api::{BFDProfile, BGPAdvertisement, BGPPeer, HeraldNode, IPPool, L2Advertisement};
use k8s_openapi::api::core::v1::Service;

/// The objects of one kind, or why they could not be listed.
#[derive(Debug, Clone)]
pub enum Listed<T> {
    /// Every object of the kind.
    Items(Vec<T>),
    /// The API server refused the list (forbidden, kind not installed): its message.
    Unreadable(String),
}

impl<T> Default for Listed<T> {
    fn default() -> Self {
        Listed::Items(Vec::new())
    }
}

impl<T> Listed<T> {
    /// The objects; none when unreadable.
    pub fn items(&self) -> &[T] {
        match self {
            Listed::Items(items) => items,
            Listed::Unreadable(_) => &[],
        }
    }

    /// Whether the list was read.
    pub fn is_read(&self) -> bool {
        matches!(self, Listed::Items(_))
    }
}

/// Everything the report is built from.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// All Services (those not of type LoadBalancer are skipped).
    pub services: Listed<Service>,
    /// All `HeraldNode`s.
    pub nodes: Listed<HeraldNode>,
    /// All `IPPool`s.
    pub pools: Listed<IPPool>,
    /// All `BGPPeer`s.
    pub peers: Listed<BGPPeer>,
    /// All `BGPAdvertisement`s.
    pub bgp_advertisements: Listed<BGPAdvertisement>,
    /// All `L2Advertisement`s.
    pub l2_advertisements: Listed<L2Advertisement>,
    /// All `BFDProfile`s.
    pub bfd_profiles: Listed<BFDProfile>,
}

//! What the caller asks the speaker to announce: prefixes and their attributes.
//!
//! The API is level-triggered (STYLE §2): the caller hands each peer's session the whole
//! [`DesiredRoutes`] and the session converges the peer to it.

use std::collections::HashMap;

use ipnet::IpNet;

/// A large community (RFC 8092): global administrator, local data 1, local data 2.
pub type LargeCommunity = (u32, u32, u32);

/// The attributes Herald varies per route. ORIGIN (IGP), AS_PATH and NEXT_HOP are derived from
/// the session, so they are not here.
///
/// Lists are kept sorted and free of duplicates, so two routes with the same attribute sets
/// compare equal and are packed into the same UPDATE.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteAttrs {
    communities: Vec<u32>,
    large_communities: Vec<LargeCommunity>,
    local_pref: Option<u32>,
}

impl RouteAttrs {
    /// Attributes with the given communities (RFC 1997, as `u32` = `asn << 16 | value`), large
    /// communities (RFC 8092) and LOCAL_PREF (sent to iBGP peers only; `None` sends 100).
    pub fn new(
        mut communities: Vec<u32>,
        mut large_communities: Vec<LargeCommunity>,
        local_pref: Option<u32>,
    ) -> Self {
        communities.sort_unstable();
        communities.dedup();
        large_communities.sort_unstable();
        large_communities.dedup();
        Self {
            communities,
            large_communities,
            local_pref,
        }
    }

    /// Communities, sorted.
    pub fn communities(&self) -> &[u32] {
        &self.communities
    }

    /// Large communities, sorted.
    pub fn large_communities(&self) -> &[LargeCommunity] {
        &self.large_communities
    }

    /// LOCAL_PREF for iBGP peers, if set.
    pub fn local_pref(&self) -> Option<u32> {
        self.local_pref
    }
}

/// The whole set of routes one peer should see, keyed by prefix (host bits are ignored:
/// callers pass `IpNet::trunc`-ed prefixes; the session truncates again on input).
pub type DesiredRoutes = HashMap<IpNet, RouteAttrs>;

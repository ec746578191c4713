//! What `assign` returns: a Service's addresses, primary family first, with their pools.

use std::net::IpAddr;

use crate::service::Family;

/// One address of an [`Assignment`]. Borrows the pool name from the allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocated<'a> {
    /// The address.
    pub addr: IpAddr,
    /// The pool it is allocated from (for `herald.dev/allocated-from`); `None` for an
    /// address kept under a conflict, which no pool currently grants.
    pub pool: Option<&'a str>,
}

/// The addresses a Service holds, primary family first (the order of its status).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Assignment<'a> {
    pub(super) addrs: [Option<Allocated<'a>>; 2],
}

impl<'a> Assignment<'a> {
    /// The addresses with their pools, primary family first.
    pub fn iter(&self) -> impl Iterator<Item = &Allocated<'a>> {
        self.addrs.iter().flatten()
    }

    /// The addresses, primary family first.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.iter().map(|a| a.addr).collect()
    }

    /// The address of `family`, if any.
    pub fn get(&self, family: Family) -> Option<IpAddr> {
        self.iter()
            .map(|a| a.addr)
            .find(|a| Family::of(*a) == family)
    }

    /// Number of addresses.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

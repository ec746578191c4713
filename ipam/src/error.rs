//! Why an address cannot be given, and why a pool configuration is refused.
//!
//! Every [`Error`] names the Service; its [`Reason`] names the address, the pool and the
//! other Service involved where there is one. Display is short and lowercase, ready for a
//! Kubernetes Event: `service default/db: 10.0.0.1 conflicts with default/web on TCP/80`.

use std::fmt;
use std::net::IpAddr;

use super::service::{Family, Protocol, ServiceKey};

/// An allocation failure or conflict of one Service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("service {service}: {reason}")]
pub struct Error {
    /// The Service concerned.
    pub service: ServiceKey,
    /// What went wrong.
    pub reason: Reason,
}

/// What went wrong for a Service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// A requested or held address lies in no pool.
    #[error("{addr} is not in any pool")]
    NotInAnyPool {
        /// The address.
        addr: IpAddr,
    },
    /// The address lies in a pool the Service may not use (or may not get it from).
    #[error("{addr}: pool {pool} {denial}")]
    Denied {
        /// The address.
        addr: IpAddr,
        /// The first pool containing it.
        pool: String,
        /// Why that pool refuses.
        denial: Denial,
    },
    /// The address is held by a Service it cannot be shared with.
    #[error("{addr} {clash}")]
    InUse {
        /// The address.
        addr: IpAddr,
        /// With whom and why it cannot be shared.
        clash: Clash,
    },
    /// A held address differs from the one the Service now requests.
    #[error("{addr} is not the requested {requested}")]
    NotRequested {
        /// The held address.
        addr: IpAddr,
        /// The requested one.
        requested: IpAddr,
    },
    /// Addresses were requested, but none of this family.
    #[error("no {family} address requested")]
    NoneRequested {
        /// The family.
        family: Family,
    },
    /// Two requested addresses of the same family.
    #[error("more than one {family} address requested")]
    TwoRequested {
        /// The family.
        family: Family,
    },
    /// A requested address of a family the Service does not use.
    #[error("{addr} requested, but the service does not use {family}")]
    FamilyNotUsed {
        /// The address.
        addr: IpAddr,
        /// Its family.
        family: Family,
    },
    /// No requested pool exists.
    #[error("pool {pool} does not exist")]
    UnknownPool {
        /// The first requested pool name.
        pool: String,
    },
    /// A requested pool refuses the Service.
    #[error("pool {pool} {denial}")]
    PoolRefuses {
        /// The pool.
        pool: String,
        /// Why.
        denial: Denial,
    },
    /// No pool the Service may use has addresses of this family.
    #[error("no pool serves {family} to it")]
    NoPool {
        /// The family.
        family: Family,
    },
    /// Every pool the Service may use is full for this family.
    #[error("no free {family} address in pool {}", .pools.join(", "))]
    Exhausted {
        /// The family.
        family: Family,
        /// The pools tried, in order.
        pools: Vec<String>,
    },
    /// `RequireDualStack`, and one family cannot be served.
    #[error("family missing: {family}: {cause}")]
    FamilyMissing {
        /// The family that cannot be served.
        family: Family,
        /// Why.
        cause: Box<Reason>,
    },
    /// The Service holds (or its status claims) an address that is no longer valid. It keeps
    /// the address reserved and is not moved until its request changes, the pools change back,
    /// or it is released.
    #[error("conflict on {addr}: {cause}")]
    Conflict {
        /// The address.
        addr: IpAddr,
        /// Why it is no longer valid.
        cause: Box<Reason>,
    },
}

/// Why a pool refuses a Service or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The pool is disabled.
    #[error("is disabled")]
    Disabled,
    /// `allocateTo` admits neither the namespace's name nor its labels.
    #[error("is not allocated to this namespace")]
    Namespace,
    /// `allocateTo.serviceSelectors` do not select the Service.
    #[error("does not select this service")]
    ServiceSelector,
    /// The Service asked for other pools by name.
    #[error("is not among the requested pools")]
    NotRequested,
    /// `avoidBuggyIPs` and the address ends in .0 or .255.
    #[error("avoids addresses ending in .0 and .255")]
    Buggy,
}

/// Why an address cannot be shared with the Service holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clash {
    /// One of the two has no sharing key.
    NotShared {
        /// The holder.
        other: ServiceKey,
    },
    /// The sharing keys differ.
    OtherKey {
        /// The holder.
        other: ServiceKey,
    },
    /// Both expose this port.
    Port {
        /// The holder.
        other: ServiceKey,
        /// The protocol.
        protocol: Protocol,
        /// The port.
        port: u16,
    },
    /// Not both `Cluster` traffic policy, and different pods selected.
    Backends {
        /// The holder.
        other: ServiceKey,
    },
}

impl Clash {
    /// The Service holding the address.
    pub fn other(&self) -> &ServiceKey {
        match self {
            Clash::NotShared { other }
            | Clash::OtherKey { other }
            | Clash::Port { other, .. }
            | Clash::Backends { other } => other,
        }
    }
}

impl fmt::Display for Clash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Clash::NotShared { other } => write!(f, "is in use by {other} and not shared"),
            Clash::OtherKey { other } => {
                write!(f, "is in use by {other} under another sharing key")
            }
            Clash::Port {
                other,
                protocol,
                port,
            } => write!(f, "conflicts with {other} on {protocol}/{port}"),
            Clash::Backends { other } => write!(
                f,
                "is in use by {other}, which selects other pods and a local traffic policy \
                 is involved"
            ),
        }
    }
}

/// A pool configuration the allocator refuses; the previous configuration stays in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A range starts in one family and ends in the other.
    #[error("pool {pool}: range {start}-{end} mixes address families")]
    MixedFamilies {
        /// The pool.
        pool: String,
        /// Range start.
        start: IpAddr,
        /// Range end.
        end: IpAddr,
    },
    /// A range ends before it starts.
    #[error("pool {pool}: range {start}-{end} ends before it starts")]
    Reversed {
        /// The pool.
        pool: String,
        /// Range start.
        start: IpAddr,
        /// Range end.
        end: IpAddr,
    },
    /// Two pools share a name.
    #[error("pool {pool} is defined twice")]
    Duplicate {
        /// The pool.
        pool: String,
    },
}

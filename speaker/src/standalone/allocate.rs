//! The allocator embedded in standalone mode: config in, addresses out.
//!
//! Standalone hosts that read the same file must agree on every Service's address without
//! talking to each other, whatever each has seen before (one may have been down while
//! Services came and went). So the assignment is a function of the current configuration
//! only: every [`Embedded::apply`] assigns every Service into a fresh allocator with
//! [`Placement::Hashed`] (each Service's address derived from a hash of its name, or its
//! sharing key, within its pool), in an order computed from the configuration:
//!
//! 1. Services that request addresses (`spec.loadBalancerIP`, the annotations), so a request
//!    wins over a hashed placement that happens to land on the same address;
//! 2. then the others; within each group by [`rank`] (a fixed hash of `namespace/name`),
//!    ties by name.
//!
//! A collision (two Services whose candidates meet) goes to the Service ranked first; the
//! other takes its next candidate. Consequences, all the same on every host:
//! - an unchanged configuration gives the same addresses, across restarts and reloads;
//! - adding a Service moves no other Service, except one ranked after it whose address the
//!   newcomer takes (a collision); removing a Service moves only Services that had lost a
//!   collision to it; with a sparse pool both are rare, and requested addresses never move;
//! - an exhausted pool leaves the lowest-ranked Services without an address.
//!
//! The persisted [`State`] no longer decides anything: it is the last applied assignment,
//! read at start so that an address that differs from the previous run (a changed file, an
//! upgrade from the history-based placement) is reported as a move ([`Outcome::moved`]).
//! A config whose pools or Services cannot be converted is refused whole.

use std::collections::BTreeMap;
use std::net::IpAddr;

use herald_api::standalone::StandaloneConfig;
use herald_ipam::convert::{self, ConvertError, LbClass};
use herald_ipam::{self as ipam, Allocator, Placement, PoolCounts, placement_hash};

use super::state::State;

/// A Service whose addresses differ from the previous run or configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// `namespace/name`.
    pub service: String,
    /// What it held before.
    pub from: Vec<IpAddr>,
    /// What it holds now (empty: it lost its address, e.g. to a higher-ranked Service in an
    /// exhausted pool).
    pub to: Vec<IpAddr>,
}

/// The outcome of applying one config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Per Service (`namespace/name`): its addresses with the granting pool, primary family
    /// first.
    pub assigned: BTreeMap<String, Vec<(IpAddr, Option<String>)>>,
    /// Services that got no (or not all) addresses, and why.
    pub errors: Vec<ipam::Error>,
    /// Per pool: assigned and available counts per family.
    pub counts: BTreeMap<String, PoolCounts>,
    /// Services still configured whose addresses changed since the previous apply (or,
    /// on the first, since the persisted state), sorted by Service.
    pub moved: Vec<Moved>,
    /// What to persist.
    pub state: State,
}

/// The order in which standalone assigns Services that request no address: a fixed hash
/// of `namespace/name`, the same on every host and version.
pub fn rank(service: &str) -> u128 {
    placement_hash(&["standalone-order", service], 0)
}

/// The embedded allocator and the last assignment, to report moves against.
#[derive(Debug)]
pub struct Embedded {
    previous: BTreeMap<String, Vec<IpAddr>>,
}

impl Embedded {
    /// An allocator whose first [`Embedded::apply`] reports moves against `state`.
    pub fn new(state: State) -> Self {
        Embedded {
            previous: state.services.into_iter().collect(),
        }
    }

    /// Applies `config`: assigns every configured Service from scratch.
    pub fn apply(&mut self, config: &StandaloneConfig) -> Result<Outcome, Vec<ConvertError>> {
        let mut errors = Vec::new();
        let pools: Vec<ipam::Pool> = config
            .ip_pools
            .iter()
            .filter_map(|p| convert::pool(p).map_err(|e| errors.push(e)).ok())
            .collect();
        let mut services: Vec<(bool, u128, String, ipam::Service)> = Vec::new();
        for svc in config
            .services
            .iter()
            .filter(|s| convert::is_managed(s, &LbClass::default()))
        {
            match convert::service(svc, &BTreeMap::new()) {
                Ok(s) => {
                    let key = s.key.to_string();
                    services.push((s.requested_ips.is_empty(), rank(&key), key, s));
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut allocator = Allocator::with_placement(Placement::Hashed);
        let mut outcome = Outcome::default();
        // Pools were validated by the loader; a refusal here (duplicate name) is a
        // conversion-level problem of the config, reported per pool.
        match allocator.set_pools(pools) {
            Ok(conflicts) => outcome.errors.extend(conflicts),
            Err(e) => {
                return Err(vec![ConvertError::Pool {
                    pool: String::new(),
                    error: herald_api::validate::FieldError::new("metadata.name", e.to_string()),
                }]);
            }
        }
        let configured: std::collections::BTreeSet<String> =
            services.iter().map(|(_, _, k, _)| k.clone()).collect();
        services.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
        for (_, _, _, svc) in services {
            if let Err(e) = allocator.assign(svc) {
                outcome.errors.push(e);
            }
        }
        for (key, assignment) in allocator.assignments() {
            let addrs: Vec<(IpAddr, Option<String>)> = assignment
                .iter()
                .map(|a| (a.addr, a.pool.map(str::to_owned)))
                .collect();
            outcome.assigned.insert(key.to_string(), addrs);
        }
        let now: BTreeMap<String, Vec<IpAddr>> = outcome
            .assigned
            .iter()
            .filter(|(_, addrs)| !addrs.is_empty())
            .map(|(k, addrs)| (k.clone(), addrs.iter().map(|(a, _)| *a).collect()))
            .collect();
        for (key, from) in &self.previous {
            let to = now.get(key).cloned().unwrap_or_default();
            if configured.contains(key) && *from != to {
                outcome.moved.push(Moved {
                    service: key.clone(),
                    from: from.clone(),
                    to,
                });
            }
        }
        outcome.state.services = now.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        self.previous = now;
        for p in &config.ip_pools {
            let name = p.metadata.name.clone().unwrap_or_default();
            if let Some(c) = allocator.counts(&name) {
                outcome.counts.insert(name, c);
            }
        }
        outcome.errors.sort_by(|a, b| a.service.cmp(&b.service));
        outcome
            .errors
            .dedup_by(|a, b| a.service == b.service && a.reason == b.reason);
        Ok(outcome)
    }
}

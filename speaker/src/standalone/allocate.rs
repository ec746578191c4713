//! The allocator embedded in standalone mode: config in, addresses out, state kept.
//!
//! Standalone has no API server to hold Service status, so the persisted [`State`] plays
//! its part: on the first [`Embedded::apply`] every persisted assignment is restored
//! (oldest first) before anything new is allocated, and afterwards the state is
//! re-derived from the allocator, so an address never moves across restarts or reloads.
//! A config whose pools or Services cannot be converted is refused whole; the allocator is
//! left as it was.

use std::collections::BTreeMap;
use std::net::IpAddr;

use herald_api::standalone::StandaloneConfig;
use herald_controller::convert::{self, ConvertError, LbClass};
use herald_controller::ipam::{self, Allocator, PoolCounts};

use super::state::State;

/// The outcome of applying one config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Per Service (`namespace/name`): its addresses with the granting pool (`None` for an
    /// address kept under a conflict), primary family first.
    pub assigned: BTreeMap<String, Vec<(IpAddr, Option<String>)>>,
    /// Services that got no (or not all) addresses, and why.
    pub errors: Vec<ipam::Error>,
    /// Per pool: assigned and available counts per family.
    pub counts: BTreeMap<String, PoolCounts>,
    /// What to persist.
    pub state: State,
}

/// The embedded allocator with the order in which Services first got addresses.
#[derive(Debug)]
pub struct Embedded {
    allocator: Allocator,
    /// Service keys, oldest first: the persisted state's order, then new Services as they
    /// appear in the config.
    order: Vec<String>,
    restore: Option<State>,
}

impl Embedded {
    /// An allocator that restores `state` on the first [`Embedded::apply`].
    pub fn new(state: State) -> Self {
        Embedded {
            allocator: Allocator::new(),
            order: Vec::new(),
            restore: Some(state),
        }
    }

    /// Applies `config`: pools, then Services (restored, released, assigned).
    pub fn apply(&mut self, config: &StandaloneConfig) -> Result<Outcome, Vec<ConvertError>> {
        let mut errors = Vec::new();
        let pools: Vec<ipam::Pool> = config
            .ip_pools
            .iter()
            .filter_map(|p| convert::pool(p).map_err(|e| errors.push(e)).ok())
            .collect();
        let mut services: BTreeMap<String, ipam::Service> = BTreeMap::new();
        let mut config_order = Vec::new();
        for svc in config
            .services
            .iter()
            .filter(|s| convert::is_managed(s, &LbClass::default()))
        {
            match convert::service(svc, &BTreeMap::new()) {
                Ok(s) => {
                    let key = s.key.to_string();
                    config_order.push(key.clone());
                    services.insert(key, s);
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut outcome = Outcome::default();
        // Pools were validated by the loader; a refusal here (duplicate name) is a
        // conversion-level problem of the config, reported per pool.
        match self.allocator.set_pools(pools) {
            Ok(conflicts) => outcome.errors.extend(conflicts),
            Err(e) => {
                return Err(vec![ConvertError::Pool {
                    pool: String::new(),
                    error: herald_api::validate::FieldError::new("metadata.name", e.to_string()),
                }]);
            }
        }
        if let Some(state) = self.restore.take() {
            let restored = state.services.iter().filter_map(|(key, addrs)| {
                let mut svc = services.get(key)?.clone();
                svc.current = addrs.clone();
                Some(svc)
            });
            outcome.errors.extend(self.allocator.restore(restored));
            self.order = state.services.into_iter().map(|(k, _)| k).collect();
        }
        // Gone from the config: release.
        let gone: Vec<String> = self
            .order
            .iter()
            .filter(|k| !services.contains_key(*k))
            .cloned()
            .collect();
        for key in &gone {
            if let Some((ns, name)) = key.split_once('/') {
                self.allocator.release(&ipam::ServiceKey::new(ns, name));
            }
        }
        self.order.retain(|k| services.contains_key(k));
        for key in config_order {
            if !self.order.contains(&key) {
                self.order.push(key);
            }
        }
        for key in &self.order {
            let svc = services
                .remove(key)
                .expect("order holds only configured services");
            if let Err(e) = self.allocator.assign(svc) {
                outcome.errors.push(e);
            }
        }
        for (key, assignment) in self.allocator.assignments() {
            let addrs: Vec<(IpAddr, Option<String>)> = assignment
                .iter()
                .map(|a| (a.addr, a.pool.map(str::to_owned)))
                .collect();
            outcome.assigned.insert(key.to_string(), addrs);
        }
        outcome.state.services = self
            .order
            .iter()
            .filter_map(|k| {
                let addrs = outcome.assigned.get(k)?;
                (!addrs.is_empty()).then(|| (k.clone(), addrs.iter().map(|(a, _)| *a).collect()))
            })
            .collect();
        for p in &config.ip_pools {
            let name = p.metadata.name.clone().unwrap_or_default();
            if let Some(c) = self.allocator.counts(&name) {
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

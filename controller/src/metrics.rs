//! Prometheus metrics (`/metrics`). Names start with `herald_`; labels are bounded (pool,
//! family, result, error kind), never a Service name or an address.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `result` label of reconciles: `assigned`, `failed`, `conflict`, `released`, `ignored`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// The outcome.
    pub result: &'static str,
}

/// `kind` label of errors ([`crate::error::Error::metric_label`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The error kind.
    pub kind: &'static str,
}

/// Pool address gauge labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// Pool name.
    pub pool: String,
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
}

/// Every metric the controller exports, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Service reconciles by outcome.
    pub reconciles: Family<ResultLabel, Counter>,
    /// Reconcile errors (requeued) by kind.
    pub reconcile_errors: Family<KindLabel, Counter>,
    /// Events that could not be published.
    pub event_errors: Counter,
    /// Addresses in use per pool and family.
    pub pool_assigned: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    /// Addresses still available per pool and family (f64: IPv6 pools exceed u64).
    pub pool_available: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    /// Services holding an address that no pool grants them any more.
    pub conflicts: Gauge,
    /// Services restored from their status at the last start or leadership gain.
    pub restored: Gauge,
    /// 1 while this replica leads, else 0.
    pub leader: Gauge,
    /// Leadership changes seen by this replica.
    pub leader_transitions: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let m = Metrics {
            registry: Registry::default(),
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            event_errors: Counter::default(),
            pool_assigned: Family::default(),
            pool_available: Family::default(),
            conflicts: Gauge::default(),
            restored: Gauge::default(),
            leader: Gauge::default(),
            leader_transitions: Counter::default(),
        };
        registry.register(
            "controller_reconciles",
            "Service reconciles by result",
            m.reconciles.clone(),
        );
        registry.register(
            "controller_reconcile_errors",
            "Service reconciles that failed and were requeued, by error kind",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "controller_event_errors",
            "Kubernetes Events that could not be published",
            m.event_errors.clone(),
        );
        registry.register(
            "pool_addresses_assigned",
            "Addresses in use per pool and family",
            m.pool_assigned.clone(),
        );
        registry.register(
            "pool_addresses_available",
            "Addresses available per pool and family",
            m.pool_available.clone(),
        );
        registry.register(
            "controller_conflicts",
            "Services holding an address no pool grants them any more",
            m.conflicts.clone(),
        );
        registry.register(
            "controller_restored_services",
            "Services restored from their status at the last start or leadership gain",
            m.restored.clone(),
        );
        registry.register(
            "controller_leader",
            "1 while this replica is the leader",
            m.leader.clone(),
        );
        registry.register(
            "controller_leader_transitions",
            "Leadership changes seen by this replica",
            m.leader_transitions.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

//! Prometheus metrics (`/metrics`). Names start with `herald_`; labels are bounded (pool,
//! family, peer, result), never a client address.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// `result` label of reloads.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `success` or `failure`.
    pub result: &'static str,
}

/// Pool address gauge labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// Pool name.
    pub pool: String,
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
}

/// Per-peer labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    /// Peer name.
    pub peer: String,
}

/// A BGP NOTIFICATION's labels: peer, `sent` or `received`, code and subcode names (a bounded
/// set: RFC 4271 §4.5 and the IANA registry).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// Peer name.
    pub peer: String,
    /// `sent` or `received`.
    pub direction: &'static str,
    /// Error code name, e.g. `Cease`.
    pub code: &'static str,
    /// Error subcode name, e.g. `Administrative Shutdown`.
    pub subcode: &'static str,
}

/// Histograms by label set, each with the buckets of its metric.
pub type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Buckets of `herald_bgp_announce_seconds`: 1 ms (below the 5 ms default coalescing, so
/// an immediate write shows) to 10 s (a peer whose TCP window is full).
pub const BGP_ANNOUNCE_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn bgp_announce_histogram() -> Histogram {
    Histogram::new(BGP_ANNOUNCE_BUCKETS)
}

/// Per-interface labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InterfaceLabel {
    /// Interface name.
    pub interface: String,
}

/// Per-VIP dataplane labels (bounded by the number of VIPs).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VipLabels {
    /// The Service (`namespace/name`).
    pub service: String,
    /// `address:port/protocol-number`.
    pub vip: String,
}

/// Drop reason label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: &'static str,
}

/// Every metric the speaker exports, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Configuration reloads by result.
    pub config_reloads: Family<ResultLabel, Counter>,
    /// Objects left out of the snapshot in force (cluster mode: each bad object is left out
    /// and the rest applies).
    pub config_left_out: Gauge,
    /// Addresses in use per pool and family (f64: IPv6 pools exceed u64 only in available).
    pub pool_assigned: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    /// Addresses still available per pool and family.
    pub pool_available: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    /// Services without all their addresses.
    pub services_failed: Gauge,
    /// Services with addresses.
    pub services_assigned: Gauge,
    /// Desired routes per peer.
    pub desired_routes: Family<PeerLabel, Gauge>,
    /// 1 while the session with the peer is Established.
    pub bgp_session_up: Family<PeerLabel, Gauge>,
    /// Prefixes announced to the peer.
    pub bgp_prefixes_sent: Family<PeerLabel, Gauge>,
    /// Prefixes the peer announces (counted, not installed).
    pub bgp_prefixes_received: Family<PeerLabel, Gauge>,
    /// BGP NOTIFICATIONs sent and received.
    pub bgp_notifications: Family<NotificationLabels, Counter>,
    /// Seconds from a prefix becoming desired on an Established session to the UPDATE
    /// carrying it written to the socket, per peer.
    pub bgp_announce_seconds: Histograms<PeerLabel>,
    /// 1 while the BFD session with the peer is Up.
    pub bfd_session_up: Family<PeerLabel, Gauge>,
    /// Addresses this node answers ARP/NDP for, per interface.
    pub l2_owned: Family<InterfaceLabel, Gauge>,
    /// ARP replies and solicited neighbour advertisements sent, per interface.
    pub l2_replies: Family<InterfaceLabel, Gauge>,
    /// Gratuitous ARPs and unsolicited neighbour advertisements sent, per interface.
    pub l2_announcements: Family<InterfaceLabel, Gauge>,
    /// Seconds from learning that another node's address lost its owner to this node's
    /// first gratuitous ARP or unsolicited neighbour advertisement for it, per family.
    pub l2_takeover_seconds: herald_l2::takeover::TakeoverHistograms,
    /// Seconds from noticing a configuration change to the new desired state being handed
    /// to the announcers.
    pub change_to_announce_seconds: Histogram,
    /// 1 per interface the XDP balancer is attached to.
    pub dataplane_attached: Family<InterfaceLabel, Gauge>,
    /// Packets the XDP balancer forwarded per VIP (kernel counter, since the maps were made).
    pub dataplane_packets: Family<VipLabels, Gauge>,
    /// Bytes the XDP balancer forwarded per VIP.
    pub dataplane_bytes: Family<VipLabels, Gauge>,
    /// VIP packets the XDP balancer dropped, per reason.
    pub dataplane_drops: Family<ReasonLabel, Gauge>,
    /// Packets the decapsulation program unwrapped on this host.
    pub dataplane_decapsulated: Gauge,
    /// Next hops of the balancer's backends with a neighbour entry Herald keeps resolved.
    pub dataplane_next_hops: Gauge,
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
            config_reloads: Family::default(),
            config_left_out: Gauge::default(),
            pool_assigned: Family::default(),
            pool_available: Family::default(),
            services_failed: Gauge::default(),
            services_assigned: Gauge::default(),
            desired_routes: Family::default(),
            bgp_session_up: Family::default(),
            l2_owned: Family::default(),
            l2_replies: Family::default(),
            l2_announcements: Family::default(),
            bfd_session_up: Family::default(),
            bgp_prefixes_sent: Family::default(),
            bgp_prefixes_received: Family::default(),
            bgp_notifications: Family::default(),
            bgp_announce_seconds: Family::new_with_constructor(bgp_announce_histogram),
            l2_takeover_seconds: herald_l2::takeover::takeover_histograms(),
            change_to_announce_seconds: Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            dataplane_attached: Family::default(),
            dataplane_packets: Family::default(),
            dataplane_bytes: Family::default(),
            dataplane_drops: Family::default(),
            dataplane_decapsulated: Gauge::default(),
            dataplane_next_hops: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            m.config_reloads.clone(),
        );
        registry.register(
            "config_objects_left_out",
            "Objects left out of the snapshot in force, each for an invalid field or reference",
            m.config_left_out.clone(),
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
            "services_assigned",
            "Services holding addresses",
            m.services_assigned.clone(),
        );
        registry.register(
            "services_failed",
            "Services missing addresses",
            m.services_failed.clone(),
        );
        registry.register(
            "desired_routes",
            "Routes this node wants announced per peer",
            m.desired_routes.clone(),
        );
        registry.register(
            "bgp_session_up",
            "1 while the BGP session is Established",
            m.bgp_session_up.clone(),
        );
        registry.register(
            "bgp_prefixes_sent",
            "Prefixes announced to the peer",
            m.bgp_prefixes_sent.clone(),
        );
        registry.register(
            "bgp_notifications",
            "BGP NOTIFICATION messages sent and received, by code and subcode",
            m.bgp_notifications.clone(),
        );
        registry.register(
            "bgp_announce_seconds",
            "Time from a prefix newly desired on an Established session (set_routes) to the \
             UPDATE carrying it written to the socket; the table sent when a session comes up \
             is not counted",
            m.bgp_announce_seconds.clone(),
        );
        registry.register(
            "bgp_prefixes_received",
            "Prefixes the peer announces (counted, not installed)",
            m.bgp_prefixes_received.clone(),
        );
        registry.register(
            "bfd_session_up",
            "1 while the BFD session with the peer is Up",
            m.bfd_session_up.clone(),
        );
        registry.register(
            "l2_owned_addresses",
            "Addresses this node answers ARP/NDP for",
            m.l2_owned.clone(),
        );
        registry.register(
            "l2_replies_sent",
            "ARP replies and solicited neighbour advertisements sent (since start)",
            m.l2_replies.clone(),
        );
        registry.register(
            "l2_announcements_sent",
            "Gratuitous ARPs and unsolicited neighbour advertisements sent (since start)",
            m.l2_announcements.clone(),
        );
        registry.register(
            "l2_takeover_seconds",
            "Time from learning that the owner of an address died, left or stopped being a \
             candidate to this node's first gratuitous ARP or unsolicited neighbour \
             advertisement for it",
            m.l2_takeover_seconds.clone(),
        );
        registry.register(
            "change_to_announce_seconds",
            "Time from a configuration change to the new desired state handed to the sessions",
            m.change_to_announce_seconds.clone(),
        );
        registry.register(
            "dataplane_attached",
            "1 per interface the XDP balancer is attached to",
            m.dataplane_attached.clone(),
        );
        registry.register(
            "dataplane_vip_packets",
            "Packets the XDP balancer forwarded for the VIP (kernel counter)",
            m.dataplane_packets.clone(),
        );
        registry.register(
            "dataplane_vip_bytes",
            "Bytes the XDP balancer forwarded for the VIP (kernel counter)",
            m.dataplane_bytes.clone(),
        );
        registry.register(
            "dataplane_drops",
            "VIP packets the XDP balancer dropped, by reason (kernel counter)",
            m.dataplane_drops.clone(),
        );
        registry.register(
            "dataplane_decapsulated_packets",
            "Packets the decapsulation program unwrapped on this host (kernel counter)",
            m.dataplane_decapsulated.clone(),
        );
        registry.register(
            "dataplane_next_hops",
            "Next hops of the XDP balancer's backends with a managed neighbour entry kept by Herald",
            m.dataplane_next_hops.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every speaker metric the Grafana dashboard queries is one the speaker exports.
    #[test]
    fn the_dashboard_queries_only_metrics_the_speaker_exports() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/herald.json");
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let m = Metrics::new();
        let peer = PeerLabel { peer: "p".into() };
        let interface = InterfaceLabel {
            interface: "eth0".into(),
        };
        let vip = VipLabels {
            service: "a/b".into(),
            vip: "192.0.2.1:80/6".into(),
        };
        m.config_reloads
            .get_or_create(&ResultLabel { result: "success" })
            .inc();
        m.desired_routes.get_or_create(&peer).set(1);
        m.bgp_session_up.get_or_create(&peer).set(1);
        m.bgp_prefixes_sent.get_or_create(&peer).set(1);
        m.bfd_session_up.get_or_create(&peer).set(1);
        m.l2_owned.get_or_create(&interface).set(1);
        m.l2_replies.get_or_create(&interface).set(1);
        m.l2_announcements.get_or_create(&interface).set(1);
        m.dataplane_attached.get_or_create(&interface).set(1);
        m.dataplane_packets.get_or_create(&vip).set(1);
        m.dataplane_bytes.get_or_create(&vip).set(1);
        m.dataplane_drops
            .get_or_create(&ReasonLabel { reason: "too_big" })
            .set(1);
        m.change_to_announce_seconds.observe(0.01);
        m.bgp_announce_seconds.get_or_create(&peer).observe(0.01);
        m.l2_takeover_seconds
            .get_or_create(&herald_l2::takeover::FamilyLabel { family: "ipv4" })
            .observe(0.1);
        let exported = m.encode();
        let mut checked = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    let controller =
                        word.starts_with("herald_controller_") || word.starts_with("herald_pool_");
                    if word.starts_with("herald_") && !controller {
                        assert!(exported.contains(word), "{word} is not exported");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked >= 15, "only {checked} speaker metrics checked");
    }
}

//! When two Services may share an address (DESIGN §3).
//!
//! Both must carry the same sharing key, their ports must not overlap (same protocol and
//! port number), and either both use traffic policy `Cluster` or both select the same pods
//! (equal backend keys). The rule is symmetric; the allocator keeps every address's holders
//! pairwise compatible.

use super::error::Clash;
use super::service::{Spec, TrafficPolicy};

/// Why `svc` may not share an address held by `holder`, if it may not.
pub(crate) fn clash(svc: &Spec, holder: &Spec) -> Option<Clash> {
    let other = || holder.key.clone();
    match (svc.sharing_key(), holder.sharing_key()) {
        (Some(a), Some(b)) if a == b => {}
        (Some(_), Some(_)) => return Some(Clash::OtherKey { other: other() }),
        _ => return Some(Clash::NotShared { other: other() }),
    }
    if let Some(&(protocol, port)) = svc.ports.iter().find(|p| holder.ports.contains(p)) {
        return Some(Clash::Port {
            other: other(),
            protocol,
            port,
        });
    }
    let both_cluster = svc.traffic_policy == TrafficPolicy::Cluster
        && holder.traffic_policy == TrafficPolicy::Cluster;
    if !both_cluster && svc.backend_key != holder.backend_key {
        return Some(Clash::Backends { other: other() });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Protocol, Service, ServiceKey};

    fn svc(
        name: &str,
        key: Option<&str>,
        ports: &[u16],
        policy: TrafficPolicy,
        pods: &str,
    ) -> Spec {
        let mut s = Service::new(ServiceKey::new("default", name));
        s.sharing_key = key.map(str::to_owned);
        s.ports = ports.iter().map(|p| (Protocol::Tcp, *p)).collect();
        s.traffic_policy = policy;
        s.backend_key = pods.into();
        s.into()
    }

    #[test]
    fn sharing_needs_same_key_disjoint_ports_and_cluster_policy_or_same_pods() {
        use TrafficPolicy::{Cluster, Local};
        let web = svc("web", Some("k"), &[80], Cluster, "app=web");
        let cases = [
            (
                "disjoint ports, both cluster",
                svc("a", Some("k"), &[443], Cluster, "app=x"),
                None,
            ),
            (
                "no key",
                svc("a", None, &[443], Cluster, "app=web"),
                Some("is in use by default/web and not shared"),
            ),
            (
                "other key",
                svc("a", Some("j"), &[443], Cluster, "app=web"),
                Some("is in use by default/web under another sharing key"),
            ),
            (
                "same port",
                svc("a", Some("k"), &[443, 80], Cluster, "app=web"),
                Some("conflicts with default/web on TCP/80"),
            ),
            (
                "local, other pods",
                svc("a", Some("k"), &[443], Local, "app=x"),
                Some(
                    "is in use by default/web, which selects other pods and a local traffic policy is involved",
                ),
            ),
            (
                "local, same pods",
                svc("a", Some("k"), &[443], Local, "app=web"),
                None,
            ),
        ];
        for (name, s, want) in cases {
            assert_eq!(
                clash(&s, &web).map(|c| c.to_string()).as_deref(),
                want,
                "{name}"
            );
        }
        let udp = {
            let mut s = svc("dns", Some("k"), &[], Cluster, "");
            s.ports = vec![(Protocol::Udp, 80)].into_boxed_slice();
            s
        };
        assert_eq!(clash(&udp, &web), None, "same number, other protocol");
    }
}

//! Which interfaces an `L2Advertisement` answers on: name patterns, and the interfaces left
//! out by default.
//!
//! On a Kubernetes node every pod has a veth, and CNIs add bridges and tunnels; answering
//! ARP there (or sending gratuitous ARP into every pod) is wrong. So an empty `interfaces`
//! list means every usable interface except those named like [`DEFAULT_EXCLUDED`], which
//! extends the list MetalLB ships in its `metallb-excludel2` ConfigMap (`docker*`, `cbr*`,
//! `dummy*`, `virbr*`, `lxcbr*`, `veth*`, `lo`, `cali*`, `tunl*`, `flannel*`, `kube-ipvs*`,
//! `cni*`, `nodelocaldns*`) with the interfaces of Cilium, kube-router, Antrea, OVN, Weave
//! and VXLAN/Geneve overlays. A non-empty list is matched as patterns, and a pattern that
//! names an excluded interface (`veth*`, `cni0`) selects it: explicit wins.
//!
//! Patterns: `*` matches any run of characters (also none), `?` exactly one; everything else
//! matches itself. Pure.

/// Interfaces not answered on unless a pattern names them.
pub const DEFAULT_EXCLUDED: &[&str] = &[
    "lo",
    // MetalLB's metallb-excludel2 list.
    "docker*",
    "cbr*",
    "dummy*",
    "virbr*",
    "lxcbr*",
    "veth*",
    "cali*",
    "tunl*",
    "flannel*",
    "kube-ipvs*",
    "cni*",
    "nodelocaldns*",
    // Cilium (pod veths lxc*, cilium_host, cilium_net, cilium_vxlan).
    "lxc*",
    "cilium*",
    // Overlays: Calico's vxlan.calico, Flannel's flannel.1 and OVS's vxlan_sys_*, genev_sys_*.
    "vxlan*",
    "genev*",
    // Weave Net (weave, datapath, vethwe*).
    "weave*",
    "datapath",
    // kube-router.
    "kube-bridge",
    "kube-dummy-if",
    // Antrea (antrea-gw0) and OVN-Kubernetes / OVS (ovn-k8s-mp0, br-int, ovs-system).
    "antrea-*",
    "ovn-k8s-*",
    "br-int",
    "ovs-system",
];

/// Whether `name` matches `pattern` (`*` any run, `?` one character).
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with one backtrack point (the last `*`): linear in practice and
    // never recursive, whatever the pattern.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether `name` is left out by default (matches a [`DEFAULT_EXCLUDED`] pattern).
pub fn excluded_by_default(name: &str) -> bool {
    DEFAULT_EXCLUDED.iter().any(|p| matches(p, name))
}

/// Whether an advertisement with `patterns` (`L2Advertisement.interfaces`) answers on
/// `name`: empty, any interface not excluded by default; else any interface a pattern
/// matches.
pub fn selects(patterns: &[String], name: &str) -> bool {
    if patterns.is_empty() {
        !excluded_by_default(name)
    } else {
        patterns.iter().any(|p| matches(p, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_runs_single_characters_and_literals() {
        for (pattern, name, want) in [
            ("eth0", "eth0", true),
            ("eth0", "eth01", false),
            ("eth*", "eth", true),
            ("eth*", "eth12", true),
            ("eth*", "enp3s0", false),
            ("*", "anything", true),
            ("en*s0", "enp3s0", true),
            ("en*s0", "enp3s0f1", false),
            ("eth?", "eth1", true),
            ("eth?", "eth10", false),
            ("*.100", "bond0.100", true),
            ("*a*b*", "xaxxbx", true),
            ("*a*b", "xaxxbx", false),
            ("", "", true),
            ("", "eth0", false),
        ] {
            assert_eq!(matches(pattern, name), want, "{pattern:?} vs {name:?}");
        }
    }

    #[test]
    fn an_empty_list_leaves_pod_and_cni_interfaces_out() {
        for pod in [
            "veth1a2b3c4d",
            "cni0",
            "cali12345",
            "lxc_health",
            "lxc9f8e7d",
            "cilium_host",
            "flannel.1",
            "vxlan.calico",
            "docker0",
            "kube-ipvs0",
            "kube-bridge",
            "nodelocaldns",
            "tunl0",
            "genev_sys_6081",
            "weave",
            "antrea-gw0",
            "ovn-k8s-mp0",
            "lo",
        ] {
            assert!(!selects(&[], pod), "{pod} answered by default");
        }
        for uplink in [
            "eth0", "enp3s0", "eno1", "bond0", "br0", "br-lan", "ens5.100",
        ] {
            assert!(selects(&[], uplink), "{uplink} left out");
        }
    }

    #[test]
    fn a_pattern_naming_an_excluded_interface_selects_it() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(selects(&p(&["veth*"]), "veth1a2b"));
        assert!(selects(&p(&["cni0"]), "cni0"));
        assert!(!selects(&p(&["veth*"]), "eth0"), "a list is exact");
        assert!(selects(&p(&["eth0", "en*"]), "enp1s0"));
        assert!(!selects(&p(&["eth0", "en*"]), "cni0"));
    }
}

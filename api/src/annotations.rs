//! Service annotations: Herald's own keys, the MetalLB and OpenELB keys accepted for
//! migration, and how a Service's requests are read from them.
//!
//! For each meaning the keys are read in the order listed (Herald's first). When several keys
//! for the same meaning are present they must agree; otherwise the Service is refused with an
//! error naming both keys, rather than one silently winning.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::validate::FieldError;

/// Names the pool or pools (comma-separated, tried in order) to allocate from.
pub const POOL: &str = "herald.dev/pool";
/// Requests specific addresses, comma-separated, at most one per IP family.
pub const LOAD_BALANCER_IPS: &str = "herald.dev/load-balancer-ips";
/// Services with the same sharing key may share an address (see DESIGN §3 rules).
pub const SHARING_KEY: &str = "herald.dev/sharing-key";
/// Written by the controller: the pool the Service's addresses came from.
pub const ALLOCATED_FROM: &str = "herald.dev/allocated-from";

/// Keys that pick pools, in the order they are consulted.
pub const POOL_KEYS: &[&str] = &[
    POOL,
    "metallb.io/address-pool",
    "metallb.universe.tf/address-pool",
    "eip.openelb.kubesphere.io/v1alpha2",
];
/// Keys that request addresses, in the order they are consulted (`spec.loadBalancerIP` is
/// read as well).
pub const LOAD_BALANCER_IPS_KEYS: &[&str] = &[
    LOAD_BALANCER_IPS,
    "metallb.io/loadBalancerIPs",
    "metallb.universe.tf/loadBalancerIPs",
    "eip.openelb.kubesphere.io/v1alpha1",
];
/// Keys that set the sharing key, in the order they are consulted.
pub const SHARING_KEY_KEYS: &[&str] = &[
    SHARING_KEY,
    "metallb.io/allow-shared-ip",
    "metallb.universe.tf/allow-shared-ip",
];

/// What a Service asks of the allocator through annotations and `spec.loadBalancerIP`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LbRequest {
    /// Pools to allocate from, in order; empty means "any pool that admits the Service".
    pub pools: Vec<String>,
    /// Requested addresses, at most one per family.
    pub addresses: Vec<IpAddr>,
    /// Sharing key, if any.
    pub sharing_key: Option<String>,
}

/// Reads a Service's requests. `load_balancer_ip` is its `spec.loadBalancerIP`.
pub fn lb_request(
    annotations: &BTreeMap<String, String>,
    load_balancer_ip: Option<&str>,
) -> Result<LbRequest, FieldError> {
    let pools = agreed(annotations, POOL_KEYS)?
        .map(|(_, v)| split_list(v))
        .unwrap_or_default();

    let mut requested: Option<(String, String)> =
        agreed(annotations, LOAD_BALANCER_IPS_KEYS)?.map(|(k, v)| (field(k), v.to_owned()));
    if let Some(ip) = load_balancer_ip.filter(|s| !s.trim().is_empty()) {
        match &requested {
            Some((key, v)) if split_list(v) != split_list(ip) => {
                return Err(FieldError::new(
                    "spec.loadBalancerIP",
                    format!("{ip:?} disagrees with {key} {v:?}; set only one"),
                ));
            }
            Some(_) => {}
            None => requested = Some(("spec.loadBalancerIP".to_owned(), ip.to_owned())),
        }
    }
    let mut addresses: Vec<IpAddr> = Vec::new();
    if let Some((key, value)) = requested {
        for item in split_list(&value) {
            let ip: IpAddr = item
                .parse()
                .map_err(|_| FieldError::new(&key, format!("{item:?} is not an IP address")))?;
            if addresses.iter().any(|a| a.is_ipv4() == ip.is_ipv4()) {
                return Err(FieldError::new(&key, "at most one address per IP family"));
            }
            addresses.push(ip);
        }
    }

    let sharing_key = agreed(annotations, SHARING_KEY_KEYS)?
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    Ok(LbRequest {
        pools,
        addresses,
        sharing_key,
    })
}

fn field(key: &str) -> String {
    format!("metadata.annotations[{key:?}]")
}

/// The first present key of `keys` with its value; an error when another present key of the
/// same meaning says something else.
fn agreed<'a>(
    annotations: &'a BTreeMap<String, String>,
    keys: &[&'static str],
) -> Result<Option<(&'static str, &'a str)>, FieldError> {
    let mut found: Option<(&'static str, &'a str)> = None;
    for key in keys {
        if let Some(value) = annotations.get(*key) {
            match found {
                None => found = Some((key, value)),
                Some((first, v)) if split_list(v) != split_list(value) => {
                    return Err(FieldError::new(
                        field(key),
                        format!("{value:?} disagrees with {first} {v:?}; set only one"),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(found)
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn herald_keys_are_read() {
        let r = lb_request(
            &ann(&[
                (POOL, "blue, green"),
                (LOAD_BALANCER_IPS, "192.0.2.1,2001:db8::1"),
                (SHARING_KEY, "web"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(r.pools, ["blue", "green"]);
        assert_eq!(r.addresses.len(), 2);
        assert_eq!(r.sharing_key.as_deref(), Some("web"));
    }

    #[test]
    fn metallb_and_openelb_keys_are_accepted() {
        let r = lb_request(
            &ann(&[
                ("metallb.universe.tf/address-pool", "legacy"),
                ("eip.openelb.kubesphere.io/v1alpha1", "192.0.2.9"),
                ("metallb.io/allow-shared-ip", "k"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(r.pools, ["legacy"]);
        assert_eq!(r.addresses, ["192.0.2.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.sharing_key.as_deref(), Some("k"));
    }

    #[test]
    fn spec_load_balancer_ip_is_read() {
        let r = lb_request(&BTreeMap::new(), Some("192.0.2.3")).unwrap();
        assert_eq!(r.addresses, ["192.0.2.3".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn disagreeing_keys_are_refused_naming_both() {
        let e =
            lb_request(&ann(&[(POOL, "a"), ("metallb.io/address-pool", "b")]), None).unwrap_err();
        assert_eq!(e.field, "metadata.annotations[\"metallb.io/address-pool\"]");
        assert!(e.message.contains("herald.dev/pool"), "{e}");
        let e =
            lb_request(&ann(&[(LOAD_BALANCER_IPS, "192.0.2.1")]), Some("192.0.2.2")).unwrap_err();
        assert_eq!(e.field, "spec.loadBalancerIP");
    }

    #[test]
    fn agreeing_keys_are_fine() {
        let r = lb_request(&ann(&[(POOL, "a"), ("metallb.io/address-pool", "a")]), None);
        assert_eq!(r.unwrap().pools, ["a"]);
    }

    #[test]
    fn bad_addresses_are_refused_with_the_key() {
        let e = lb_request(&ann(&[(LOAD_BALANCER_IPS, "192.0.2.1,192.0.2.2")]), None).unwrap_err();
        assert_eq!(e.message, "at most one address per IP family");
        let e = lb_request(&ann(&[("metallb.io/loadBalancerIPs", "nope")]), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "metadata.annotations[\"metallb.io/loadBalancerIPs\"]: \"nope\" is not an IP address"
        );
    }
}

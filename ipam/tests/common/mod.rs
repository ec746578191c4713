//! Helpers shared by the allocator's integration tests.

#![allow(dead_code)]

use std::net::IpAddr;

use herald_ipam::{
    Allocator, Assignment, Error, Family, FamilyPolicy, Pool, Protocol, Service, ServiceKey,
};

/// Parses an address.
pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// Parses `a-b`, a CIDR, or a single address into an inclusive range.
pub fn range(s: &str) -> (IpAddr, IpAddr) {
    if let Some((a, b)) = s.split_once('-') {
        return (ip(a), ip(b));
    }
    let Some((base, len)) = s.split_once('/') else {
        return (ip(s), ip(s));
    };
    let len: u32 = len.parse().expect("prefix length");
    match ip(base) {
        IpAddr::V4(a) => {
            let a = u32::from(a);
            let host = if len == 0 { u32::MAX } else { u32::MAX >> len };
            (
                IpAddr::V4((a & !host).into()),
                IpAddr::V4((a | host).into()),
            )
        }
        IpAddr::V6(a) => {
            let a = u128::from(a);
            let host = if len == 0 {
                u128::MAX
            } else {
                u128::MAX >> len
            };
            (
                IpAddr::V6((a & !host).into()),
                IpAddr::V6((a | host).into()),
            )
        }
    }
}

/// An auto-assign pool over `ranges`.
pub fn pool(name: &str, ranges: &[&str]) -> Pool {
    Pool::new(name, ranges.iter().map(|r| range(r)).collect())
}

/// An allocator with `pools`.
pub fn allocator(pools: Vec<Pool>) -> Allocator {
    let mut a = Allocator::new();
    a.set_pools(pools).expect("valid pools");
    a
}

/// A single-stack IPv4 Service `default/<name>` exposing TCP/80.
pub fn svc(name: &str) -> Service {
    svc_in("default", name)
}

/// A single-stack IPv4 Service `<ns>/<name>` exposing TCP/80.
pub fn svc_in(ns: &str, name: &str) -> Service {
    let mut s = Service::new(ServiceKey::new(ns, name));
    s.ports = vec![(Protocol::Tcp, 80)];
    s
}

/// `svc` with a sharing key and these TCP ports.
pub fn sharing(name: &str, key: &str, ports: &[u16]) -> Service {
    let mut s = svc(name);
    s.sharing_key = Some(key.into());
    s.ports = ports.iter().map(|p| (Protocol::Tcp, *p)).collect();
    s
}

/// `svc` with families and policy.
pub fn dual(name: &str, families: &[Family], policy: FamilyPolicy) -> Service {
    let mut s = svc(name);
    s.ip_families = families.to_vec();
    s.family_policy = policy;
    s
}

/// The key `default/<name>`.
pub fn key(name: &str) -> ServiceKey {
    ServiceKey::new("default", name)
}

/// An assignment's addresses as strings, or the error's message.
pub fn show(r: &Result<Assignment, Error>) -> Result<Vec<String>, String> {
    match r {
        Ok(a) => Ok(a.addresses().iter().map(ToString::to_string).collect()),
        Err(e) => Err(e.to_string()),
    }
}

/// Shorthand for an expected successful result.
pub fn got(addrs: &[&str]) -> Result<Vec<String>, String> {
    Ok(addrs.iter().map(|s| s.to_string()).collect())
}

/// Shorthand for an expected error message.
pub fn failed(msg: &str) -> Result<Vec<String>, String> {
    Err(msg.to_string())
}

/// An assignment's addresses and pools, owned.
pub type Owned = Vec<(IpAddr, Option<String>)>;

/// Owned copy of an assignment.
pub fn owned(a: &Assignment<'_>) -> Owned {
    a.iter()
        .map(|x| (x.addr, x.pool.map(str::to_owned)))
        .collect()
}

/// Owned copy of every non-empty assignment, sorted by Service.
pub fn owned_all(a: &Allocator) -> Vec<(ServiceKey, Owned)> {
    a.assignments()
        .iter()
        .filter(|(_, x)| !x.is_empty())
        .map(|(k, x)| (k.clone(), owned(x)))
        .collect()
}

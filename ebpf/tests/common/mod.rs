//! Shared by the eBPF integration tests: a namespace set up like a balancer host, fixtures
//! run through BPF_PROG_TEST_RUN, and the frames the balancer is expected to produce.
#![allow(dead_code)] // each test binary uses a different part

pub mod bench;
pub mod packet;
pub mod vip;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun, TestRunOptions, Xdp};
use herald_dataplane::maglev::{self, TableSize};
use herald_ebpf::Balancer;
use herald_ebpf::abi::{Backend, FlowKey, VipKey};
use herald_ebpf::hash::flow_hash;
use herald_tests::{Netns, veth_pair};
use packet::*;

/// MAC of the balancer's uplink in the lab.
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// MAC of the next hop towards the backends (a static neighbour entry).
pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// MAC of the next hop towards 10.2.0.0/16 (a static neighbour entry).
pub const ROUTER2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];
/// MAC a client's frames come from.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// Runs `f` on a thread pinned to CPU 0 inside a fresh namespace laid out like a balancer
/// host: uplink 10.0.0.1/24 + fd00::1/64, backends in 10.1.0.0/16 and fd01::/64 behind the
/// router 10.0.0.2 / fd00::2 (MAC [`ROUTER_MAC`], static), forwarding on (bpf_fib_lookup
/// requires it), uplink MTU 1500. Both namespaces go away when `f` returns or panics.
pub fn in_lb_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let lb = Netns::new("xlb");
    let peer = Netns::new("xpeer");
    let (lb_if, _) = veth_pair(
        &lb,
        &["10.0.0.1/24", "fd00::1/64"],
        &peer,
        &["10.0.0.2/24", "fd00::2/64"],
    );
    lb.ip(&["link", "set", "dev", &lb_if, "address", &mac_str(LB_MAC)]);
    lb.enable_forwarding();
    for (addr, dev_args) in [("10.0.0.2", vec![]), ("fd00::2", vec!["-6"])] {
        let mut args: Vec<&str> = dev_args.clone();
        let mac = mac_str(ROUTER_MAC);
        args.extend_from_slice(&["neigh", "replace", addr, "lladdr", &mac, "dev", &lb_if]);
        args.extend_from_slice(&["nud", "permanent"]);
        lb.ip(&args);
    }
    lb.ip(&["route", "add", "10.1.0.0/16", "via", "10.0.0.2"]);
    // A second next hop, for backends that move behind another router.
    let mac3 = mac_str(ROUTER2_MAC);
    lb.ip(&[
        "neigh",
        "replace",
        "10.0.0.3",
        "lladdr",
        &mac3,
        "dev",
        &lb_if,
        "nud",
        "permanent",
    ]);
    lb.ip(&["route", "add", "10.2.0.0/16", "via", "10.0.0.3"]);
    lb.ip(&["-6", "route", "add", "fd01::/64", "via", "fd00::2"]);
    std::thread::scope(|s| {
        s.spawn(|| {
            lb.enter_current_thread();
            pin_to_cpu(0);
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// Pins the calling thread to `cpu` (threads and processes it starts afterwards inherit
/// that). BPF_PROG_TEST_RUN runs an XDP program on the caller's CPU, so this also chooses
/// which CPU's flow table the program uses.
pub fn pin_to_cpu(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).expect("cpu index");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .unwrap_or_else(|e| panic!("pinning the test thread to CPU {cpu}: {e}"));
}

pub fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Runs `input` through the program once: (verdict, output frame).
pub fn run(prog: &Xdp, input: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; input.len() + 512];
    let res = prog
        .test_run(TestRunOptions {
            data_in: Some(input),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(res.data_size_out as usize);
    (res.return_value, out)
}

/// One packet fixture: input, expected verdict, expected output bytes.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: String,
    pub input: Vec<u8>,
    pub verdict: u32,
    pub output: Vec<u8>,
}

impl Fixture {
    /// A packet the program must pass up unchanged.
    pub fn pass(name: &str, input: Vec<u8>) -> Self {
        Self {
            name: name.to_owned(),
            output: input.clone(),
            input,
            verdict: XDP_PASS,
        }
    }
}

/// Runs every fixture in order and panics listing each one whose verdict or bytes differ.
pub fn check(prog: &Xdp, fixtures: &[Fixture]) {
    let mut failures = Vec::new();
    for f in fixtures {
        let (verdict, out) = run(prog, &f.input);
        if verdict != f.verdict || out != f.output {
            failures.push(format!(
                "{}: verdict {verdict} (want {}), output\n  got  {}\n  want {}",
                f.name,
                f.verdict,
                hex(&out),
                hex(&f.output)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "fixtures failed:\n{}",
        failures.join("\n")
    );
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A VIP as installed in the maps, with the Maglev table the speaker would build for it.
#[derive(Debug, Clone)]
pub struct Service {
    pub key: VipKey,
    pub vip_id: u32,
    /// (backend id, backend address, weight)
    pub backends: Vec<(u32, IpAddr, u32)>,
    pub table: Vec<u32>,
}

impl Service {
    pub fn new(
        addr: IpAddr,
        port: u16,
        proto: u8,
        vip_id: u32,
        backends: &[(u32, IpAddr)],
    ) -> Self {
        let mut s = Self {
            key: VipKey::new(addr, port, proto),
            vip_id,
            backends: backends.iter().map(|&(id, a)| (id, a, 1)).collect(),
            table: Vec::new(),
        };
        s.rebuild();
        s
    }

    pub fn rebuild(&mut self) {
        if self.backends.is_empty() {
            self.table = Vec::new();
            return;
        }
        let input: Vec<maglev::Backend> = self
            .backends
            .iter()
            .map(|&(id, key, weight)| maglev::Backend { id, key, weight })
            .collect();
        self.table = maglev::build_table(&input, TableSize::default()).expect("maglev table");
    }

    /// Writes VIP, backends and table to the balancer.
    pub fn install(&self, bal: &mut Balancer) {
        for &(id, addr, _) in &self.backends {
            bal.set_backend(id, &Backend::new(addr, false))
                .expect("set backend");
        }
        bal.set_vip(&self.key, self.vip_id).expect("set vip");
        bal.set_table(self.vip_id, &self.table).expect("set table");
    }

    /// The backend a new flow `key` gets from the table.
    pub fn choice(&self, key: &FlowKey) -> (u32, IpAddr) {
        let id = self.table[(flow_hash(key) % self.table.len() as u32) as usize];
        let addr = self
            .backends
            .iter()
            .find(|b| b.0 == id)
            .map(|b| b.1)
            .expect("table ids are backends");
        (id, addr)
    }
}

/// The frame the balancer emits for `inner` (an IP packet) sent to `backend`: Ethernet to the
/// router, outer IPv4 from 172.16.<hash>, DF, TTL 64, protocol 4 (IPIP), TOS copied.
pub fn encap_v4(backend: Ipv4Addr, hash: u32, tos: u8, inner: &[u8]) -> Vec<u8> {
    let src = Ipv4Addr::new(172, 16, (hash >> 8) as u8, hash as u8);
    let len = (20 + inner.len()) as u16;
    let mut h = vec![0x45, tos];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x40, 0, 64, 4, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&backend.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(inner);
    eth(ROUTER_MAC, LB_MAC, ETH_IP, &h)
}

/// As [`encap_v4`] for IPv6: outer source fd00:6865:7261:6c64::<hash>, flow label from the
/// hash, next header 41, hop limit 64.
pub fn encap_v6(backend: Ipv6Addr, hash: u32, tclass: u8, inner: &[u8]) -> Vec<u8> {
    let mut src = [
        0xfd, 0x00, 0x68, 0x65, 0x72, 0x61, 0x6c, 0x64, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    src[12..].copy_from_slice(&hash.to_be_bytes());
    let vtc = (6u32 << 28) | (u32::from(tclass) << 20) | (hash & 0xfffff);
    let outer = ipv6_vtc(Ipv6Addr::from(src), backend, 41, vtc, inner);
    eth(ROUTER_MAC, LB_MAC, ETH_IPV6, &outer)
}

//! End to end in network namespaces, with real TCP through the XDP path:
//!
//! ```text
//!                       ┌─ lb1 (XDP, native) ─┐
//! client ── router ─────┤   ECMP for the VIP  ├── (IPIP back via router) ──> be1..be4
//!                       └─ lb2 (XDP, native) ─┘      TC decap, VIP on lo, name server
//! ```
//!
//! Dual-stack: IPIP for the IPv4 VIP, IP6IP6 for the IPv6 VIP. The balancers send
//! encapsulated packets back out of the interface they came in on
//! (XDP_TX) to the router, which routes them to the backend; backends answer the client
//! directly (direct server return).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use common::packet::TCP;
use common::*;
use herald_ebpf::abi::FlowKey;
use herald_ebpf::{Balancer, Decap, LoadOptions, Variant, XdpMode};
use herald_tests::NameServer;
use herald_tests::{Netns, veth_pair};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

fn inside<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter_current_thread();
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

fn no_rp_filter(ns: &Netns) {
    ns.exec(
        "sysctl",
        &[
            "-qw",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ],
    );
}

fn mtu(ns: &Netns, ifname: &str, mtu: &str) {
    ns.ip(&["link", "set", "dev", ifname, "mtu", mtu]);
}

struct Backend {
    name: String,
    // Dropped last: the namespace outlives its programs and server.
    _decap: Decap,
    _server: NameServer,
    _ns: Netns,
}

struct Lab {
    client: Netns,
    router: Netns,
    lbs: Vec<(Netns, Balancer)>,
    backends: Vec<Backend>,
    _router_nop: Balancer,
    svc: Service,
    svc6: Service,
}

impl Lab {
    fn new() -> Self {
        let client = Netns::new("e2ec");
        let router = Netns::new("e2er");
        router.enable_forwarding();
        no_rp_filter(&router);
        router.exec(
            "sysctl",
            &[
                "-qw",
                "net.ipv4.fib_multipath_hash_policy=1",
                "net.ipv6.fib_multipath_hash_policy=1",
            ],
        );
        let (client_if, _) = veth_pair(
            &client,
            &["10.10.0.2/24", "fd10::2/64"],
            &router,
            &["10.10.0.1/24", "fd10::1/64"],
        );
        // veth leaves TCP checksums to "hardware" (CHECKSUM_PARTIAL) and XDP frames carry no
        // such note, so an XDP-forwarded packet would arrive with its checksum never filled
        // in. A real NIC fills it on transmit; here the client's kernel must.
        client.exec("ethtool", &["-K", &client_if, "tx", "off"]);
        client.ip(&["route", "add", "default", "via", "10.10.0.1"]);
        client.ip(&["-6", "route", "add", "default", "via", "fd10::1"]);

        // The router's ends of the balancer links need an XDP program of their own to take
        // frames the balancers send with XDP_TX (veth delivers those through the peer's XDP
        // queue); the bench build's empty program does nothing else.
        let mut router_nop = Balancer::load(&LoadOptions {
            variant: Variant::Bench,
            ..LoadOptions::default()
        })
        .expect("loading the router's pass program");
        let mut lbs = Vec::new();
        for k in 1..=2 {
            let lb = Netns::new(&format!("e2el{k}"));
            let (lb_if, r_if) = veth_pair(
                &lb,
                &[&format!("10.11.{k}.2/24"), &format!("fd11:{k}::2/64")],
                &router,
                &[&format!("10.11.{k}.1/24"), &format!("fd11:{k}::1/64")],
            );
            mtu(&lb, &lb_if, "1600");
            mtu(&router, &r_if, "1600");
            lb.enable_forwarding();
            lb.ip(&["route", "add", "default", "via", &format!("10.11.{k}.1")]);
            // bpf_fib_lookup needs the router's MAC resolved.
            lb.ip(&[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &format!("fd11:{k}::1"),
            ]);
            lb.exec("ping", &["-c1", "-W2", &format!("10.11.{k}.1")]);
            lb.exec("ping", &["-6", "-c1", "-W2", &format!("fd11:{k}::1")]);
            let bal = inside(&lb, || {
                let mut bal =
                    Balancer::load(&LoadOptions::default()).expect("loading the balancer");
                bal.attach(&lb_if, XdpMode::Driver).expect("attaching XDP");
                bal
            });
            inside(&router, || {
                router_nop
                    .empty_program_mut()
                    .expect("bench build")
                    .attach(&r_if, XdpMode::Driver)
                    .expect("attaching the router's pass program");
            });
            lbs.push((lb, bal));
        }
        router.ip(&[
            "route",
            "add",
            &format!("{VIP}/32"),
            "nexthop",
            "via",
            "10.11.1.2",
            "nexthop",
            "via",
            "10.11.2.2",
        ]);
        router.ip(&[
            "-6",
            "route",
            "add",
            &format!("{VIP6}/128"),
            "nexthop",
            "via",
            "fd11:1::2",
            "nexthop",
            "via",
            "fd11:2::2",
        ]);
        let svc = Service::new(IpAddr::V4(VIP), 80, TCP, 0, &[]);
        let svc6 = Service::new(IpAddr::V6(VIP6), 80, TCP, 1, &[]);
        let mut lab = Self {
            client,
            router,
            lbs,
            backends: Vec::new(),
            _router_nop: router_nop,
            svc,
            svc6,
        };
        for _ in 0..3 {
            lab.add_backend();
        }
        lab
    }

    /// Adds backend host i (10.12.i.2): decap on its uplink, the VIP on lo, a name server;
    /// then rebuilds the table on both balancers.
    fn add_backend(&mut self) {
        let i = self.backends.len() as u8 + 1;
        let ns = Netns::new(&format!("e2eb{i}"));
        let addr = Ipv4Addr::new(10, 12, i, 2);
        let (be_if, r_if) = veth_pair(
            &ns,
            &[&format!("{addr}/24"), &format!("fd12:{i}::2/64")],
            &self.router,
            &[&format!("10.12.{i}.1/24"), &format!("fd12:{i}::1/64")],
        );
        mtu(&ns, &be_if, "1600");
        mtu(&self.router, &r_if, "1600");
        no_rp_filter(&ns);
        ns.ip(&["route", "add", "default", "via", &format!("10.12.{i}.1")]);
        ns.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &format!("fd12:{i}::1"),
        ]);
        ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
        ns.ip(&["-6", "addr", "add", &format!("{VIP6}/128"), "dev", "lo"]);
        let decap = inside(&ns, || {
            let mut d = Decap::load().expect("loading decap");
            d.attach(&be_if).expect("attaching decap");
            d
        });
        let name = format!("be{i}");
        let server = NameServer::spawn(
            &ns,
            // [::]:80 takes IPv4 connections too (bindv6only is 0).
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 80),
            &name,
        );
        self.backends.push(Backend {
            _ns: ns,
            name,
            _decap: decap,
            _server: server,
        });
        self.svc
            .backends
            .push((u32::from(i) - 1, IpAddr::V4(addr), 1));
        self.svc.rebuild();
        let addr6 = Ipv6Addr::new(0xfd12, u16::from(i), 0, 0, 0, 0, 0, 2);
        self.svc6
            .backends
            .push((10 + u32::from(i), IpAddr::V6(addr6), 1));
        self.svc6.rebuild();
        for (_, bal) in &mut self.lbs {
            self.svc.install(bal);
            self.svc6.install(bal);
        }
    }

    fn name_of(&self, id: u32) -> &str {
        &self.backends[id as usize].name
    }

    fn route_vip_via(&self, lbs: &[u8]) {
        let mut args = vec![
            "route".to_owned(),
            "replace".to_owned(),
            format!("{VIP}/32"),
        ];
        for k in lbs {
            args.extend([
                "nexthop".to_owned(),
                "via".to_owned(),
                format!("10.11.{k}.2"),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.router.ip(&args);
    }
}

/// A client connection: sends a line, reads the backend's name.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open() -> (Self, String) {
        Self::open_to(IpAddr::V4(VIP))
    }

    fn open_to(vip: IpAddr) -> (Self, String) {
        let stream = TcpStream::connect_timeout(&SocketAddr::new(vip, 80), Duration::from_secs(5))
            .expect("connecting to the VIP");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let writer = stream.try_clone().unwrap();
        let mut conn = Self {
            reader: BufReader::new(stream),
            writer,
        };
        let name = conn.read_name();
        (conn, name)
    }

    fn read_name(&mut self) -> String {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .expect("reading the backend's name");
        line.trim().to_owned()
    }

    fn ask(&mut self) -> String {
        self.writer.write_all(b"who\n").expect("writing");
        self.read_name()
    }

    fn key(&self) -> FlowKey {
        let local = self.writer.local_addr().unwrap();
        FlowKey::new(local.ip(), local.port(), IpAddr::V4(VIP), 80, TCP)
    }
}

#[test]
fn tcp_through_two_xdp_balancers_reaches_consistent_backends() {
    herald_tests::require_privileged!();
    herald_tests::require_command("ping", "iputils-ping");
    herald_tests::require_command("ethtool", "ethtool");
    // What a NIC's RSS does for a real balancer: every packet of a connection on one CPU.
    // On veth XDP runs on the sending CPU, so the client, the backends' servers (threads and
    // processes inherit this) and the kernel work they cause all stay on CPU 0; otherwise a
    // connection's packets would meet another CPU's flow table, which does not know the flow
    // and, after the table change below, sends it to another backend.
    pin_to_cpu(0);
    let mut lab = Lab::new();

    // Long-lived connections first; they are checked again after topology changes.
    let mut long: Vec<(Conn, String)> =
        inside(&lab.client, || (0..30).map(|_| Conn::open()).collect());

    // 1000 short connections: all succeed, shares within ±20 % of a third.
    let mut per_name = std::collections::BTreeMap::<String, u32>::new();
    inside(&lab.client, || {
        for _ in 0..1000 {
            let (conn, name) = Conn::open();
            drop(conn);
            *per_name.entry(name).or_default() += 1;
        }
    });
    eprintln!("1000 connections per backend: {per_name:?}");
    assert_eq!(per_name.values().sum::<u32>(), 1000);
    for b in &lab.backends {
        let n = per_name.get(&b.name).copied().unwrap_or(0);
        assert!(
            (267..=400).contains(&n),
            "{} got {n} of 1000: {per_name:?}",
            b.name
        );
    }
    for (k, (_, bal)) in lab.lbs.iter().enumerate() {
        assert!(
            bal.vip_stats(0).unwrap().packets > 0,
            "ECMP used balancer {}",
            k + 1
        );
    }

    // The same 5-tuple reaches the same backend through either balancer: pin the VIP route
    // to one balancer, then the other, and every long-lived connection keeps its backend.
    for only in [[1u8], [2u8]] {
        lab.route_vip_via(&only);
        inside(&lab.client, || {
            for (conn, name) in &mut long {
                assert_eq!(&conn.ask(), name, "via balancer {}", only[0]);
            }
        });
    }
    lab.route_vip_via(&[1, 2]);

    // A fourth backend: the table changes for about a quarter of the flows, yet every
    // established connection stays on its backend (the flow table remembers it).
    let old = lab.svc.clone();
    lab.add_backend();
    let moved = long
        .iter()
        .filter(|(c, _)| old.choice(&c.key()).0 != lab.svc.choice(&c.key()).0)
        .count();
    eprintln!("{moved} of 30 long-lived flows map elsewhere in the new table");
    assert!(
        moved > 0,
        "some long-lived flow should map elsewhere in the new table"
    );
    inside(&lab.client, || {
        for (conn, name) in &mut long {
            assert_eq!(&conn.ask(), name, "after adding a backend");
        }
        // New connections reach the new backend too.
        let names: std::collections::BTreeSet<String> = (0..100).map(|_| Conn::open().1).collect();
        assert!(names.contains(lab.name_of(3)), "{names:?}");
    });
    drop(long);
}

#[test]
fn ipv6_tcp_through_the_xdp_balancers_reaches_every_backend() {
    herald_tests::require_privileged!();
    herald_tests::require_command("ping", "iputils-ping");
    herald_tests::require_command("ethtool", "ethtool");
    let lab = Lab::new();
    let mut per_name = std::collections::BTreeMap::<String, u32>::new();
    inside(&lab.client, || {
        for _ in 0..300 {
            let (conn, name) = Conn::open_to(IpAddr::V6(VIP6));
            drop(conn);
            *per_name.entry(name).or_default() += 1;
        }
    });
    eprintln!("300 IPv6 connections per backend: {per_name:?}");
    for b in &lab.backends {
        let n = per_name.get(&b.name).copied().unwrap_or(0);
        assert!(n >= 50, "{} got {n} of 300: {per_name:?}", b.name);
    }
    let v6_packets: u64 = lab
        .lbs
        .iter()
        .map(|(_, bal)| bal.vip_stats(1).unwrap().packets)
        .sum();
    assert!(v6_packets >= 300, "IPv6 VIP packets counted: {v6_packets}");
}

//! The per-CPU flow caches and tables through BPF_PROG_TEST_RUN: a flow's first packet caches
//! it, its second stores it in the table of the CPU its packets run on, counts add up over
//! every CPU, a removed VIP's flows are trusted on no CPU, an ICMP error finds its flow on
//! another CPU, pinned tables survive a restart, and a flow that loses its cache slot is found
//! in its table.
//!
//! BPF_PROG_TEST_RUN runs an XDP program on the calling thread's CPU, so pinning the thread
//! (sched_setaffinity) chooses the CPU, hence the table. These tests need two CPUs.

mod common;

use std::net::IpAddr;

use common::packet::*;
use common::vip::*;
use common::*;
use herald_ebpf::abi::{Event, MAX_CPUS, MAX_FLOWS, map_name};
use herald_ebpf::balancer::table_count;
use herald_ebpf::hash::flow_cache_slot;
use herald_ebpf::{Balancer, LoadOptions, Variant};
use herald_tests::BpfFs;

/// Fails (not skips) on a one-CPU machine: these tests are about more than one table.
fn require_two_cpus() {
    let cpus = aya::util::nr_cpus().expect("possible CPUs");
    let online = aya::util::online_cpus().expect("online CPUs");
    assert!(
        cpus >= 2 && online.contains(&0) && online.contains(&1),
        "these tests need CPUs 0 and 1 online (possible: {cpus}, online: {online:?})"
    );
}

fn ack4(sport: u16) -> (Vec<u8>, Vec<u8>) {
    let ip = ipv4(CLIENT, VIP, TCP, 0x4000, &tcp(sport, 80, ACK, b"data"));
    (eth(LB_MAC, CLIENT_MAC, ETH_IP, &ip), ip)
}

#[test]
fn one_flow_table_per_possible_cpu() {
    herald_tests::require_privileged!();
    require_two_cpus();
    in_lb_netns(|| {
        let bal = load();
        let cpus = aya::util::nr_cpus().unwrap() as u32;
        assert_eq!(bal.flow_tables().unwrap(), cpus.min(MAX_CPUS));
        assert_eq!(table_count().unwrap(), cpus.min(MAX_CPUS));
        let tables = cpus.min(MAX_CPUS);
        let capacities = bal.flow_table_capacities().unwrap();
        assert_eq!(capacities.len() as u32, tables);
        assert!(
            capacities.iter().all(|&c| c == MAX_FLOWS.div_ceil(tables)),
            "each table holds its share of {MAX_FLOWS}: {capacities:?}"
        );
    });
}

#[test]
fn a_flow_is_stored_in_the_table_of_the_cpu_that_saw_it() {
    herald_tests::require_privileged!();
    require_two_cpus();
    in_lb_netns(|| {
        let mut bal = load();
        let svc = web();
        svc.install(&mut bal);
        for cpu in [0u16, 1] {
            pin_to_cpu(cpu.into());
            let port = 41000 + cpu;
            let key = key4(port, 80, TCP);
            let (syn, syn_ip) = syn4(port);
            check(bal.program(), &[forwarded("syn", &svc, &key, syn, &syn_ip)]);
            let cached = bal.cached_flows(&key).unwrap();
            assert_eq!(
                cached
                    .iter()
                    .map(|(c, f)| (*c, f.pending))
                    .collect::<Vec<_>>(),
                vec![(u32::from(cpu), 1)],
                "the SYN run on CPU {cpu} is cached, pending, on CPU {cpu} only"
            );
            assert!(bal.flows_by_cpu(&key).unwrap().is_empty(), "not stored yet");
            let (ack, ack_ip) = ack4(port);
            check(bal.program(), &[forwarded("ack", &svc, &key, ack, &ack_ip)]);
            let stored = bal.flows_by_cpu(&key).unwrap();
            assert_eq!(
                stored.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
                vec![u32::from(cpu)],
                "the second packet, on CPU {cpu}, stored it in CPU {cpu}'s table only"
            );
            assert_eq!(stored[0].1.backend, svc.choice(&key).0);
            assert_eq!(bal.cached_flows(&key).unwrap()[0].1.pending, 0);
        }

        // The flow stored on CPU 1 is a hit there...
        let key = key4(41001, 80, TCP);
        let (ack, ack_ip) = ack4(41001);
        let hits = bal.vip_stats(0).unwrap().lru_hit;
        check(
            bal.program(),
            &[forwarded("ack on CPU 1", &svc, &key, ack.clone(), &ack_ip)],
        );
        assert_eq!(bal.vip_stats(0).unwrap().lru_hit, hits + 1);
        // ... and a miss on CPU 0, which takes the table's choice, caches it there, and stores
        // it with the next packet.
        pin_to_cpu(0);
        let misses = bal.vip_stats(0).unwrap().lru_miss;
        let tables = |bal: &Balancer| -> Vec<u32> {
            bal.flows_by_cpu(&key)
                .unwrap()
                .iter()
                .map(|(t, _)| *t)
                .collect()
        };
        check(
            bal.program(),
            &[forwarded("ack on CPU 0", &svc, &key, ack.clone(), &ack_ip)],
        );
        assert_eq!(bal.vip_stats(0).unwrap().lru_miss, misses + 1);
        assert_eq!(tables(&bal), vec![1]);
        check(
            bal.program(),
            &[forwarded("next ack on CPU 0", &svc, &key, ack, &ack_ip)],
        );
        assert_eq!(tables(&bal), vec![0, 1]);
    });
}

#[test]
fn flow_count_is_the_sum_over_every_cpus_table() {
    herald_tests::require_privileged!();
    require_two_cpus();
    in_lb_netns(|| {
        let mut bal = load();
        web().install(&mut bal);
        for (cpu, ports) in [(0, 42000..42003), (1, 42100..42102)] {
            pin_to_cpu(cpu);
            for port in ports {
                open4(bal.program(), port);
            }
        }
        let by_cpu = bal.flow_counts_by_cpu().unwrap();
        assert_eq!(&by_cpu[..2], &[3, 2]);
        assert!(by_cpu[2..].iter().all(|&n| n == 0), "{by_cpu:?}");
        assert_eq!(bal.flow_count().unwrap(), 5);
    });
}

#[test]
fn flows_of_a_removed_vip_are_trusted_on_no_cpu() {
    herald_tests::require_privileged!();
    require_two_cpus();
    in_lb_netns(|| {
        let mut bal = load();
        let web = web();
        // Another port of the address keeps the address filter's bit set, so the ACKs below
        // reach the flow tables rather than passing at the filter.
        let tls = Service::new(IpAddr::V4(VIP), 443, TCP, 1, &backends4());
        web.install(&mut bal);
        tls.install(&mut bal);
        // A flow on each CPU, stored while the VIP sends it to backend 0 only.
        let mut only0 = web.clone();
        only0.backends.truncate(1);
        only0.rebuild();
        only0.install(&mut bal);
        // Ports the full table sends away from backend 0, so trusting the old flow would show.
        let mut away = (43000u16..).filter(|&p| web.choice(&key4(p, 80, TCP)).0 != 0);
        let ports = [(0usize, away.next().unwrap()), (1, away.next().unwrap())];
        for (cpu, port) in ports {
            pin_to_cpu(cpu);
            open4(bal.program(), port);
            let stored = bal.flows_by_cpu(&key4(port, 80, TCP)).unwrap();
            assert_eq!(stored.len(), 1);
            assert_eq!(stored[0].1.backend, 0);
        }

        let hits = bal.vip_stats(0).unwrap().lru_hit;
        bal.remove_vip(&web.key).unwrap();
        for (cpu, port) in ports {
            pin_to_cpu(cpu);
            check(
                bal.program(),
                &[Fixture::pass("ack after its VIP is removed", ack4(port).0)],
            );
        }
        assert_eq!(bal.vip_stats(0).unwrap().lru_hit, hits, "no hit on any CPU");

        // Back under the same id with all three backends: on every CPU the table decides,
        // not the flow stored for the removed VIP.
        web.install(&mut bal);
        for (cpu, port) in ports {
            pin_to_cpu(cpu);
            let key = key4(port, 80, TCP);
            let (ack, ack_ip) = ack4(port);
            check(
                bal.program(),
                &[forwarded(
                    "ack after the VIP is back",
                    &web,
                    &key,
                    ack,
                    &ack_ip,
                )],
            );
        }
        assert_eq!(bal.vip_stats(0).unwrap().lru_hit, hits);
    });
}

#[test]
fn an_icmp_error_follows_a_flow_stored_on_another_cpu() {
    herald_tests::require_privileged!();
    require_two_cpus();
    in_lb_netns(|| {
        let mut bal = load();
        let (before, after, port) = moving_service();
        before.install(&mut bal);
        let key = key4(port, 80, TCP);
        let (_, old) = before.choice(&key);
        pin_to_cpu(1);
        let (syn, syn_ip) = syn4(port);
        let (ack, ack_ip) = ack4(port);
        check(
            bal.program(),
            &[
                forwarded_to("syn on CPU 1", old, &key, syn, &syn_ip),
                forwarded_to("ack on CPU 1", old, &key, ack, &ack_ip),
            ],
        );
        after.install(&mut bal);

        // The router's ICMP error lands on CPU 0, whose table does not have the flow.
        pin_to_cpu(0);
        let icmp = icmp_frag_needed(port);
        check(
            bal.program(),
            &[forwarded_to(
                "icmp on CPU 0 for a flow of CPU 1",
                old,
                &key,
                eth(LB_MAC, CLIENT_MAC, ETH_IP, &icmp),
                &icmp,
            )],
        );
        assert_eq!(bal.events(Event::IcmpFollowed).unwrap(), 1);
        let tables: Vec<u32> = bal
            .flows_by_cpu(&key)
            .unwrap()
            .iter()
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(tables, vec![1], "ICMP errors never store flows");
    });
}

#[test]
fn a_restart_with_pinned_maps_keeps_every_cpus_flows() {
    herald_tests::require_privileged!();
    require_two_cpus();
    // A bpf filesystem of the test's own: unmounted, with everything pinned in it, on drop,
    // also when an assertion fails.
    let fs = BpfFs::mount();
    let pins = fs.pin_dir("herald");
    let opts = LoadOptions {
        pin_dir: Some(pins.clone()),
        variant: Variant::Forwarding,
    };
    in_lb_netns(|| {
        let (before, after, port) = moving_service();
        let key = key4(port, 80, TCP);
        let (_, old) = before.choice(&key);

        let mut first = Balancer::load(&opts).unwrap();
        before.install(&mut first);
        for cpu in [0, 1] {
            pin_to_cpu(cpu);
            let (syn, syn_ip) = syn4(port);
            let (ack, ack_ip) = ack4(port);
            check(
                first.program(),
                &[
                    forwarded_to("syn", old, &key, syn, &syn_ip),
                    forwarded_to("ack", old, &key, ack, &ack_ip),
                ],
            );
        }
        let hits = first.vip_stats(0).unwrap().lru_hit;
        drop(first); // the speaker exits

        let mut second = Balancer::load(&opts).unwrap();
        assert_eq!(
            second
                .flows_by_cpu(&key)
                .unwrap()
                .iter()
                .map(|(t, _)| *t)
                .collect::<Vec<_>>(),
            vec![0, 1],
            "both CPUs' flows survive"
        );
        assert_eq!(second.flow_tables().unwrap(), table_count().unwrap());
        // The table changes after the restart; established flows stay where they were.
        after.install(&mut second);
        for cpu in [0, 1] {
            pin_to_cpu(cpu);
            let (ack, ack_ip) = ack4(port);
            check(
                second.program(),
                &[forwarded_to("ack after restart", old, &key, ack, &ack_ip)],
            );
        }
        assert_eq!(
            second.vip_stats(0).unwrap().lru_hit,
            hits + 2,
            "hits on both CPUs"
        );
        assert_ne!(
            after.choice(&key).1,
            old,
            "the new table would move the flow"
        );
        second.unpin_all().unwrap();
        let left: Vec<_> = std::fs::read_dir(&pins).unwrap().collect();
        assert!(left.is_empty(), "pin directory empty: {left:?}");
    });
    drop(fs);
}

#[test]
fn an_upgrade_from_the_single_flow_table_keeps_its_flows_on_every_cpu() {
    herald_tests::require_privileged!();
    require_two_cpus();
    let fs = BpfFs::mount();
    let pins = fs.pin_dir("herald");
    let opts = LoadOptions {
        pin_dir: Some(pins.clone()),
        variant: Variant::Forwarding,
    };
    in_lb_netns(|| {
        let (before, after, port) = moving_service();
        let key = key4(port, 80, TCP);
        let (_, old) = before.choice(&key);

        let mut first = Balancer::load(&opts).unwrap();
        before.install(&mut first);
        open4(first.program(), port);
        let flow = first.flow(&key).unwrap().expect("the ACK stored its flow");
        drop(first);

        // What the previous build pinned as herald_flows: one LRU hash with every flow (and
        // no flow cache).
        std::fs::remove_file(pins.join(map_name::FLOW_CACHE)).unwrap();
        let path = pins.join("herald_flows");
        std::fs::remove_file(&path).unwrap();
        let def = aya_obj::Map::new_from_params(9, 40, 16, MAX_FLOWS, 1 << 1);
        let legacy = aya::maps::MapData::create(def, "herald_flows", None).unwrap();
        let mut table: aya::maps::HashMap<_, _, _> =
            aya::maps::HashMap::try_from(aya::maps::Map::from_map_data(legacy).unwrap()).unwrap();
        table.insert(key, flow, 0).unwrap();
        table.pin(&path).unwrap();

        let mut second = Balancer::load(&opts).unwrap();
        let tables = second.flow_tables().unwrap();
        assert_eq!(
            second.flows_by_cpu(&key).unwrap().len() as u32,
            tables,
            "the flow is in every CPU's table"
        );
        assert_eq!(second.flow_count().unwrap(), tables as usize);
        after.install(&mut second);
        for cpu in [0, 1] {
            pin_to_cpu(cpu);
            let (ack, ack_ip) = ack4(port);
            check(
                second.program(),
                &[forwarded_to(
                    "ack after the upgrade",
                    old,
                    &key,
                    ack,
                    &ack_ip,
                )],
            );
        }
        second.unpin_all().unwrap();
    });
    drop(fs);
}

/// Another client port whose flow falls in the same cache slot as `port`'s.
fn same_slot(port: u16) -> u16 {
    let slot = flow_cache_slot(&key4(port, 80, TCP));
    (1024..=u16::MAX)
        .find(|&p| p != port && flow_cache_slot(&key4(p, 80, TCP)) == slot)
        .expect("a port in the same cache slot")
}

#[test]
fn the_second_packet_stores_the_backend_the_first_was_given() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let (before, after, port) = moving_service();
        let key = key4(port, 80, TCP);
        let (_, old) = before.choice(&key);
        before.install(&mut bal);
        let (syn, syn_ip) = syn4(port);
        check(
            bal.program(),
            &[forwarded_to("syn", old, &key, syn, &syn_ip)],
        );
        // The table changes while the handshake is under way.
        after.install(&mut bal);
        let (ack, ack_ip) = ack4(port);
        check(
            bal.program(),
            &[forwarded_to("ack", old, &key, ack, &ack_ip)],
        );
        let stored = bal.flow(&key).unwrap().expect("stored by the ACK");
        assert_eq!(stored.backend, before.choice(&key).0);
        assert_ne!(after.choice(&key).1, old, "the new table would move it");
    });
}

#[test]
fn packets_that_get_no_second_packet_never_fill_the_table() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let web = web();
        web.install(&mut bal);
        let dns = Service::new(IpAddr::V4(VIP), 53, UDP, 1, &backends4());
        dns.install(&mut bal);
        // A SYN flood from 300 ports and 300 one-packet UDP queries.
        for port in 20000..20300 {
            let (verdict, _) = run(bal.program(), &syn4(port).0);
            assert_eq!(verdict, XDP_REDIRECT);
            let query = ipv4(CLIENT, VIP, UDP, 0, &udp(port, 53, b"query"));
            let (verdict, _) = run(bal.program(), &eth(LB_MAC, CLIENT_MAC, ETH_IP, &query));
            assert_eq!(verdict, XDP_REDIRECT);
        }
        assert_eq!(bal.flow_count().unwrap(), 0, "no flow stored");
        assert_eq!(bal.vip_stats(0).unwrap().lru_miss, 300);
        assert_eq!(bal.vip_stats(1).unwrap().lru_miss, 300);
        // A connection that goes on is stored as usual.
        open4(bal.program(), 20000);
        assert_eq!(bal.flow_count().unwrap(), 1);
    });
}

#[test]
fn a_stored_flow_that_loses_its_cache_slot_is_found_in_its_table() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let (before, after, port) = moving_service();
        let key = key4(port, 80, TCP);
        let (_, old) = before.choice(&key);
        before.install(&mut bal);
        open4(bal.program(), port);
        // Another flow takes the slot.
        let other = same_slot(port);
        let (verdict, _) = run(bal.program(), &syn4(other).0);
        assert_eq!(verdict, XDP_REDIRECT);
        assert!(bal.cached_flows(&key).unwrap().is_empty(), "slot taken");
        after.install(&mut bal);
        let hits = bal.vip_stats(0).unwrap().lru_hit;
        let (ack, ack_ip) = ack4(port);
        check(
            bal.program(),
            &[forwarded_to("ack from the table", old, &key, ack, &ack_ip)],
        );
        assert_eq!(bal.vip_stats(0).unwrap().lru_hit, hits + 1);
        // The table's hit is cached again.
        let cached = bal.cached_flows(&key).unwrap();
        assert_eq!(cached.len(), 1);
        assert_eq!(
            (cached[0].1.pending, cached[0].1.flow.backend),
            (0, before.choice(&key).0)
        );
        assert_ne!(after.choice(&key).1, old);
    });
}

#[test]
fn a_pending_flow_that_loses_its_cache_slot_takes_the_table_again() {
    herald_tests::require_privileged!();
    in_lb_netns(|| {
        let mut bal = load();
        let (before, after, port) = moving_service();
        let key = key4(port, 80, TCP);
        before.install(&mut bal);
        let (verdict, _) = run(bal.program(), &syn4(port).0);
        assert_eq!(verdict, XDP_REDIRECT);
        let (verdict, _) = run(bal.program(), &syn4(same_slot(port)).0);
        assert_eq!(verdict, XDP_REDIRECT);
        // Seen once and forgotten: the only state the program keeps for it is gone, so its
        // next packet goes by the VIP's current table (the documented cost of not storing
        // flows on their first packet).
        after.install(&mut bal);
        let (ack, ack_ip) = ack4(port);
        check(
            bal.program(),
            &[forwarded(
                "ack by the new table",
                &after,
                &key,
                ack,
                &ack_ip,
            )],
        );
        assert_eq!(bal.cached_flows(&key).unwrap()[0].1.pending, 1);
        assert!(bal.flow(&key).unwrap().is_none());
    });
}

//! BPF_PROG_TEST_RUN cost per packet of the XDP balancer against an empty XDP program, all
//! measured in the same run: (a) the empty program, (b) a non-VIP packet passed up, (c) a
//! packet of a known flow (flow-cache hit), (d) a TCP SYN (Maglev lookup, cached as pending),
//! (e) a flow's second packet (flow-cache hit and the flow-table insert), and (d) + (e), what
//! a connection's first two packets cost together.
//! Each figure is the median of 21 samples of 1M repeats. Then a cost breakdown of (c) and (d):
//! the bench build's variants that stop after each step of the program, measured the same way. The benchmark build restores each
//! forwarded frame, so every repeat sees the original packet, not its encapsulated output.
//!
//! Needs root (BPF, namespaces): `cargo bench -p herald-ebpf --bench xdp`.

#[path = "../tests/common/mod.rs"]
mod common;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use common::*;
use herald_ebpf::balancer::{FLOOR_PROGRAMS, SECOND_PROGRAM, STAGE_PROGRAMS};

const SAMPLES: usize = 21;
const REPEAT: u32 = 1_000_000;

fn sample(prog: &Xdp, input: &[u8]) -> f64 {
    let res = prog
        .test_run(TestRunOptions {
            data_in: Some(input),
            repeat: REPEAT,
            ..TestRunOptions::new()
        })
        .expect("BPF_PROG_TEST_RUN");
    // The kernel reports the mean time of one repeat.
    res.duration.as_nanos() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it
    // and must not start a minute-long benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if herald_tests::skip_privileged() {
        return;
    }
    in_lb_netns(|| {
        let common::bench::BenchLab {
            balancer: bal,
            non_vip,
            syn,
            ack,
        } = common::bench::bench_lab();
        let empty = bal.empty_program().expect("bench build has the anchor");
        let prog = bal.program();
        let second = bal
            .bench_program(SECOND_PROGRAM)
            .expect("bench build has the second-packet program");

        let (mut a, mut b, mut c, mut d, mut e) = (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..SAMPLES {
            a.push(sample(empty, &non_vip));
            b.push(sample(prog, &non_vip));
            c.push(sample(prog, &ack));
            d.push(sample(prog, &syn));
            // The SYN left the flow pending; the ACK is a second packet each repeat.
            e.push(sample(second, &ack));
        }
        let (a, b, c, d, e) = (median(a), median(b), median(c), median(d), median(e));
        println!("xdp BPF_PROG_TEST_RUN, ns/packet, median of {SAMPLES} x {REPEAT} repeats");
        println!("  (a) empty XDP program        {a:8.1}");
        println!(
            "  (b) non-VIP pass             {b:8.1}   ratio {:.2}",
            b / a
        );
        println!(
            "  (c) flow-cache hit, forward  {c:8.1}   ratio {:.2}  (goal <= 2.5; issue 17: <= 4)",
            c / a
        );
        println!(
            "  (d) SYN (Maglev, cached), fwd {d:7.1}   ratio {:.2}  (goal <= 3.5; issue 17: <= 12)",
            d / a
        );
        println!(
            "  (e) second packet of a flow  {e:8.1}   ratio {:.2}  (cache hit + flow-table insert)",
            e / a
        );
        println!(
            "  (d)+(e) first two packets    {:8.1}   ratio {:.2}",
            d + e,
            (d + e) / a
        );
        let (hits, misses) = bal.lru_stats().unwrap_or_default();
        println!("  flow cache/table: {hits} hits, {misses} misses counted");

        // Cost breakdown: each variant stops one step later; the step's cost is the
        // difference to the previous line (medians, so only roughly additive).
        const STEPS: [&str; 8] = [
            "parse to flow key",
            "VIP address filter",
            "flow cache hit / VIP lookup, counters",
            "hash, Maglev, caching (SYN only)",
            "backend + per-CPU entry",
            "outer source + next-hop cache",
            "adjust_head out and back + restore",
            "header writes + redirect (full program)",
        ];
        let mut stages: Vec<&Xdp> = STAGE_PROGRAMS
            .iter()
            .map(|n| bal.bench_program(n).expect("bench build has the stages"))
            .collect();
        stages.push(prog);
        let (mut sa, mut sc, mut sd) = (vec![], vec![vec![]; 8], vec![vec![]; 8]);
        for _ in 0..SAMPLES {
            sa.push(sample(empty, &non_vip));
            for (i, p) in stages.iter().enumerate() {
                sc[i].push(sample(p, &ack));
                sd[i].push(sample(p, &syn));
            }
        }
        let a2 = median(sa);
        println!("cost breakdown, ns/packet (cumulative; step = difference to the line above)");
        println!(
            "  {:<38} {:>8} {:>6}   {:>8} {:>6}",
            "stops after", "(c) ack", "step", "(d) syn", "step"
        );
        println!(
            "  {:<38} {a2:8.1} {:>6}   {a2:8.1} {:>6}",
            "(a) empty program", "", ""
        );
        let (mut pc, mut pd) = (a2, a2);
        for (i, step) in STEPS.iter().enumerate() {
            let (c, d) = (median(sc[i].clone()), median(sd[i].clone()));
            println!(
                "  {step:<38} {c:8.1} {:6.1}   {d:8.1} {:6.1}",
                c - pc,
                d - pd
            );
            (pc, pd) = (c, d);
        }

        // Floors: single operations alone, over the empty program measured alongside.
        let floors: Vec<&Xdp> = FLOOR_PROGRAMS
            .iter()
            .map(|(n, _)| bal.bench_program(n).expect("bench build has the floors"))
            .collect();
        // The lookups must hit: a first round lets the updates store the ACK's key.
        for p in &floors {
            run(p, &ack);
        }
        for p in &floors {
            let (verdict, out) = run(p, &ack);
            assert_eq!(verdict, XDP_PASS, "floor programs succeed");
            assert_eq!(&out, &ack, "floor programs leave the frame as it was");
        }
        let (mut fa, mut fs) = (vec![], vec![vec![]; floors.len()]);
        for _ in 0..SAMPLES {
            fa.push(sample(empty, &ack));
            for (i, p) in floors.iter().enumerate() {
                fs[i].push(sample(p, &ack));
            }
        }
        let fa = median(fa);
        println!("floors: one operation alone, ns/packet (over the empty program {fa:.1})");
        for (i, (_, what)) in FLOOR_PROGRAMS.iter().enumerate() {
            let f = median(fs[i].clone());
            println!("  {what:<38} {f:8.1} {:+6.1}", f - fa);
        }
    });
}

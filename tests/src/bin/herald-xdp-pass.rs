//! herald-xdp-pass: attaches a pass-everything XDP program to interfaces of the current
//! network namespace until SIGTERM/SIGINT (then detaches). For labs where a balancer's
//! `XDP_TX` frames arrive on a veth: veth delivers them only to a peer that runs XDP itself.
//!
//! ```text
//! herald-xdp-pass IFACE...
//! ```

use anyhow::{Context, bail};
use herald_tests::XdpPass;
use nix::sys::signal::{SigSet, Signal};

fn main() -> anyhow::Result<()> {
    let interfaces: Vec<String> = std::env::args().skip(1).collect();
    if interfaces.is_empty() || interfaces.iter().any(|i| i.starts_with('-')) {
        bail!("usage: herald-xdp-pass IFACE...");
    }
    // Block the signals before anything else so they wait for `wait` below.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.thread_block().context("blocking SIGTERM/SIGINT")?;
    let mut pass = XdpPass::load();
    for interface in &interfaces {
        pass.attach_here(interface)
            .map_err(|e| anyhow::anyhow!("attaching to {interface}: {e}"))?;
    }
    println!("attached to {}", interfaces.join(" "));
    signals.wait().context("waiting for SIGTERM")?;
    Ok(())
}

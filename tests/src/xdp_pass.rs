//! An XDP program that passes everything, for the router side of a veth pair that receives
//! frames a balancer sends with `XDP_TX`/redirect: veth hands such frames to its peer only
//! through the peer's XDP receive path, which exists while the peer has a program of its own.
//! (A physical NIC has no such need.)

use herald_ebpf::{Balancer, LoadOptions, Variant, XdpMode};

use crate::Netns;

/// The pass program attached to some interfaces; detached on drop.
#[derive(Debug)]
pub struct XdpPass {
    balancer: Balancer,
}

impl XdpPass {
    /// Loads the program (the benchmark build's empty program).
    pub fn load() -> Self {
        let balancer = Balancer::load(&LoadOptions {
            variant: Variant::Bench,
            ..LoadOptions::default()
        })
        .expect("loading the XDP pass program");
        Self { balancer }
    }

    /// Attaches it (native mode) to `ifname` in `ns`.
    pub fn attach(&mut self, ns: &Netns, ifname: &str) {
        ns.run_in(|| {
            self.attach_here(ifname)
                .unwrap_or_else(|e| panic!("attaching the pass program to {ifname}: {e}"));
        });
    }

    /// Attaches it (native mode) to `ifname` in the calling thread's namespace.
    pub fn attach_here(&mut self, ifname: &str) -> Result<(), String> {
        let prog = self
            .balancer
            .empty_program_mut()
            .ok_or("the bench build has no empty program")?;
        prog.attach(ifname, XdpMode::Driver)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

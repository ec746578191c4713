//! The decapsulation program for backend hosts: TC ingress, strips IPIP / IP6IP6 so VIP
//! packets forwarded by a balancer reach the VIP bound on this host.

use aya::Ebpf;
use aya::maps::PerCpuArray;
use aya::programs::SchedClassifier;
use aya::programs::tc::{SchedClassifierLinkId, TcAttachType, qdisc_add_clsact};

use crate::abi::{Counter, map_name};
use crate::error::Error;

/// The program's name in the object.
pub const PROGRAM: &str = "herald_decap";

static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/herald_decap.bpf.o"));

/// A loaded decapsulation program and its attachments (detached on drop).
#[derive(Debug)]
pub struct Decap {
    ebpf: Ebpf,
    links: Vec<(String, SchedClassifierLinkId)>,
}

impl Decap {
    /// Loads the program.
    pub fn load() -> Result<Self, Error> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| Error::Load {
            object: PROGRAM,
            source: Box::new(e),
        })?;
        prog_mut(&mut ebpf)?.load().map_err(|e| Error::Program {
            program: PROGRAM,
            interface: String::new(),
            source: Box::new(e),
        })?;
        Ok(Self {
            ebpf,
            links: Vec::new(),
        })
    }

    /// The program, e.g. for BPF_PROG_TEST_RUN.
    pub fn program(&self) -> &SchedClassifier {
        self.ebpf
            .program(PROGRAM)
            .and_then(|p| <&SchedClassifier>::try_from(p).ok())
            .expect("loaded in Decap::load")
    }

    /// Attaches to `interface`'s ingress (tcx where the kernel has it, else a clsact qdisc).
    pub fn attach(&mut self, interface: &str) -> Result<(), Error> {
        // An existing clsact qdisc is fine; tcx does not need one at all.
        let _ = qdisc_add_clsact(interface);
        let id = prog_mut(&mut self.ebpf)?
            .attach(interface, TcAttachType::Ingress)
            .map_err(|e| Error::Program {
                program: PROGRAM,
                interface: interface.to_owned(),
                source: Box::new(e),
            })?;
        self.links.push((interface.to_owned(), id));
        Ok(())
    }

    /// Detaches from `interface`; not attached there is not an error.
    pub fn detach(&mut self, interface: &str) -> Result<(), Error> {
        let Some(pos) = self.links.iter().position(|(i, _)| i == interface) else {
            return Ok(());
        };
        let (_, id) = self.links.remove(pos);
        prog_mut(&mut self.ebpf)?
            .detach(id)
            .map_err(|e| Error::Program {
                program: PROGRAM,
                interface: interface.to_owned(),
                source: Box::new(e),
            })
    }

    /// Packets decapsulated (`ok`) and packets the kernel refused to shrink (`failed`).
    pub fn counters(&self) -> Result<(Counter, Counter), Error> {
        let name = map_name::DECAP_STATS;
        let map: PerCpuArray<_, Counter> =
            PerCpuArray::try_from(self.ebpf.map(name).ok_or(Error::MissingMap { map: name })?)
                .map_err(|e| Error::Map {
                    map: name,
                    what: "open".to_owned(),
                    source: Box::new(e),
                })?;
        let sum = |i: u32| -> Result<Counter, Error> {
            let v = map.get(&i, 0).map_err(|e| Error::Map {
                map: name,
                what: "read".to_owned(),
                source: Box::new(e),
            })?;
            Ok(v.iter().fold(Counter::default(), |a, c| Counter {
                packets: a.packets + c.packets,
                bytes: a.bytes + c.bytes,
            }))
        };
        Ok((sum(0)?, sum(1)?))
    }
}

fn prog_mut(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, Error> {
    ebpf.program_mut(PROGRAM)
        .and_then(|p| <&mut SchedClassifier>::try_from(p).ok())
        .ok_or(Error::MissingMap { map: PROGRAM })
}

//! The decapsulation program for backend hosts: TC ingress, strips IPIP / IP6IP6 so VIP
//! packets forwarded by a balancer reach the VIP bound on this host.
//!
//! With a pin directory the attachment (a tcx link) is pinned there, so decapsulation goes on
//! while the speaker restarts, and the next run swaps its program into the pinned link.

use std::path::{Path, PathBuf};

use aya::Ebpf;
use aya::maps::PerCpuArray;
use aya::programs::LinkOrder;
use aya::programs::SchedClassifier;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{
    SchedClassifierLink, SchedClassifierLinkId, TcAttachOptions, TcAttachType, qdisc_add_clsact,
};

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
    pin_dir: Option<PathBuf>,
}

impl Decap {
    /// Loads the program; attachments stay private to this process.
    pub fn load() -> Result<Self, Error> {
        Self::load_pinned(None)
    }

    /// Loads the program; with `pin_dir`, attachments are pinned there and outlive the
    /// process (see the module docs).
    pub fn load_pinned(pin_dir: Option<&Path>) -> Result<Self, Error> {
        if let Some(dir) = pin_dir {
            crate::bpffs::prepare_dir(dir)?;
        }
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
            pin_dir: pin_dir.map(Path::to_owned),
        })
    }

    /// The program, e.g. for BPF_PROG_TEST_RUN.
    pub fn program(&self) -> &SchedClassifier {
        self.ebpf
            .program(PROGRAM)
            .and_then(|p| <&SchedClassifier>::try_from(p).ok())
            .expect("loaded in Decap::load")
    }

    fn link_pin(&self, interface: &str) -> Option<PathBuf> {
        self.pin_dir
            .as_ref()
            .map(|d| d.join(format!("link_decap_{interface}")))
    }

    /// Attaches to `interface`'s ingress (tcx where the kernel has it, else a clsact qdisc).
    /// A pinned attachment from a previous run gets this program swapped in atomically.
    pub fn attach(&mut self, interface: &str) -> Result<(), Error> {
        let prog_err = |e| Error::Program {
            program: PROGRAM,
            interface: interface.to_owned(),
            source: Box::new(e),
        };
        let link_err = |path: &Path, e: Box<dyn std::error::Error + Send + Sync>| Error::Link {
            path: path.to_owned(),
            source: e,
        };
        let Some(path) = self.link_pin(interface) else {
            // An existing clsact qdisc is fine; tcx does not need one at all.
            let _ = qdisc_add_clsact(interface);
            let id = prog_mut(&mut self.ebpf)?
                .attach(interface, TcAttachType::Ingress)
                .map_err(prog_err)?;
            self.links.push((interface.to_owned(), id));
            return Ok(());
        };
        let prog = prog_mut(&mut self.ebpf)?;
        if let Ok(old) = PinnedLink::from_pin(&path) {
            let link = SchedClassifierLink::try_from(FdLink::from(old))
                .map_err(|e| link_err(&path, Box::new(e)))?;
            let id = prog.attach_to_link(link).map_err(prog_err)?;
            // The pin keeps the attachment; dropping our handle only closes its descriptor.
            drop(prog.take_link(id).map_err(prog_err)?);
            return Ok(());
        }
        // Only a tcx link can be pinned.
        let id = prog
            .attach_with_options(
                interface,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .map_err(prog_err)?;
        let link = prog.take_link(id).map_err(prog_err)?;
        let fd_link = FdLink::try_from(link).map_err(|e| link_err(&path, Box::new(e)))?;
        fd_link
            .pin(&path)
            .map_err(|e| link_err(&path, Box::new(e)))?;
        Ok(())
    }

    /// Detaches from `interface` (pinned attachment included); not attached there is not an
    /// error.
    pub fn detach(&mut self, interface: &str) -> Result<(), Error> {
        if let Some(path) = self.link_pin(interface)
            && let Ok(link) = PinnedLink::from_pin(&path)
        {
            // Unpinning drops the last reference: the kernel detaches the program.
            link.unpin().map_err(|e| Error::Link {
                path,
                source: Box::new(e),
            })?;
        }
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
        .ok_or(Error::MissingProgram { program: PROGRAM })
}

//! The XDP balancer: loads `herald_xdp`, pins its maps, attaches it to interfaces and
//! programs VIPs, backends and Maglev tables.
//!
//! With a pin directory (`/sys/fs/bpf/herald` in the speaker) every map and every XDP
//! attachment is pinned there: a restarted speaker loads the program again, reuses the pinned
//! maps (flows, tables, counters) and swaps the new program into the pinned attachment
//! atomically, so forwarding never stops. Without one (tests, benchmarks) everything lives
//! as long as the [`Balancer`]. The flow tables (one per CPU) are in [`flows`].

mod flows;

pub use flows::{table_capacity, table_count};

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use aya::maps::{Array, ArrayOfMaps, HashMap, Map, MapData, MapInfo, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};

use crate::abi::{
    Backend, BackendStats, Config, Counter, DropReason, Event, MAGLEV_MAX_SIZE, MAX_BACKENDS,
    MAX_VIPS, Vip, VipKey, VipStats, map_name,
};
use crate::bpffs;
use crate::error::Error;
use crate::hash::vip_filter_bit;

/// `BPF_F_INNER_MAP`: lets Maglev tables of any size share the outer map.
const BPF_F_INNER_MAP: u32 = 1 << 12;
/// The forwarding program's name in the object.
pub const PROGRAM: &str = "herald_xdp";
/// The benchmark anchor's name in the bench object.
pub const EMPTY_PROGRAM: &str = "herald_xdp_nop";
/// The bench object's packet generator (returns XDP_TX), for live-frame runs.
pub const TX_PROGRAM: &str = "herald_xdp_tx";
/// The bench object's forwarding program with every flow-cache hit treated as a flow's second
/// packet (which stores the flow in the table), for timing that packet by repeats.
pub const SECOND_PROGRAM: &str = "herald_xdp_second";
/// The bench object's packet sink (counts, drops).
pub const SINK_PROGRAM: &str = "herald_xdp_sink";
/// The bench object's floors: one operation of the fast path alone, with what it does.
pub const FLOOR_PROGRAMS: [(&str, &str); 11] = [
    ("herald_floor_vip", "VIP hash lookup (20-byte key)"),
    (
        "herald_floor_lookup_cpu",
        "flow lookup, this CPU's table (now)",
    ),
    (
        "herald_floor_update_cpu",
        "flow insert, this CPU's table (now)",
    ),
    (
        "herald_floor_lookup",
        "flow lookup, one table, NO_COMMON_LRU",
    ),
    (
        "herald_floor_update",
        "flow insert, one table, NO_COMMON_LRU",
    ),
    (
        "herald_floor_update_common",
        "flow insert, one table, common LRU",
    ),
    (
        "herald_floor_lookup4",
        "flow lookup, NO_COMMON_LRU, 16 B key",
    ),
    (
        "herald_floor_update4",
        "flow insert, NO_COMMON_LRU, 16 B key",
    ),
    (
        "herald_floor_headroom",
        "adjust_head out and back + restore",
    ),
    ("herald_floor_ktime", "bpf_ktime_get_coarse_ns"),
    (
        "herald_floor_jiffies",
        "bpf_jiffies64 (inlined by the verifier)",
    ),
];
/// The bench object's cost-breakdown variants of the forwarding program, in order: each stops
/// one step later (after parsing, the VIP address filter, the flow table or VIP lookup, the
/// Maglev pick and flow insert, the backend entry, the next-hop cache check, growing and shrinking the frame).
pub const STAGE_PROGRAMS: [&str; 7] = [
    "herald_xdp_s1",
    "herald_xdp_s2",
    "herald_xdp_s3",
    "herald_xdp_s4",
    "herald_xdp_s5",
    "herald_xdp_s6",
    "herald_xdp_s7",
];

static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/herald_xdp.bpf.o"));
static BENCH_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/herald_xdp_bench.bpf.o"));

/// Which build of the program to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    /// The forwarding program.
    #[default]
    Forwarding,
    /// The benchmark build: a forwarded packet is restored after processing (so
    /// BPF_PROG_TEST_RUN repeats see the same input) and [`EMPTY_PROGRAM`] is included.
    Bench,
}

/// How to load the balancer.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Where to pin maps and attachments; `None` keeps everything private to this process.
    pub pin_dir: Option<PathBuf>,
    /// Which build to load.
    pub variant: Variant,
}

/// The outer-header defaults: sources in 172.16.0.0/16 and fd00:6865:7261:6c64::/96 with the
/// flow hash in their low bits; no new-flow limit.
pub fn default_config() -> Config {
    Config {
        encap_src4: [172, 16, 0, 0],
        encap_src6: [
            0xfd, 0x00, 0x68, 0x65, 0x72, 0x61, 0x6c, 0x64, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        max_new_flows: 0,
        flags: 0,
    }
}

/// A loaded XDP balancer. Dropping it detaches unpinned attachments and releases unpinned
/// maps; pinned ones stay until [`Balancer::detach`] or [`Balancer::unpin_all`].
#[derive(Debug)]
pub struct Balancer {
    ebpf: Ebpf,
    pin_dir: Option<PathBuf>,
    /// Interface -> link id for attachments not pinned.
    links: BTreeMap<String, aya::programs::xdp::XdpLinkId>,
}

impl Balancer {
    /// Loads the program and its maps (reusing pinned maps under `pin_dir` if present).
    pub fn load(opts: &LoadOptions) -> Result<Self, Error> {
        let object = match opts.variant {
            Variant::Forwarding => OBJECT,
            Variant::Bench => BENCH_OBJECT,
        };
        let mut loader = EbpfLoader::new();
        let mut legacy_flows = Vec::new();
        if let Some(dir) = &opts.pin_dir {
            bpffs::prepare_dir(dir)?;
            legacy_flows = flows::take_legacy_table(dir)?;
            check_pins(dir, object)?;
            for name in map_name::XDP_MAPS {
                loader.map_pin_path(name, dir.join(name));
            }
        }
        let mut ebpf = loader.load(object).map_err(|e| Error::Load {
            object: PROGRAM,
            source: Box::new(e),
        })?;
        let mut names = vec![PROGRAM];
        if opts.variant == Variant::Bench {
            names.extend([EMPTY_PROGRAM, TX_PROGRAM, SINK_PROGRAM, SECOND_PROGRAM]);
            names.extend(STAGE_PROGRAMS);
            names.extend(FLOOR_PROGRAMS.map(|(name, _)| name));
        }
        for name in names {
            let prog: &mut Xdp = program_mut(&mut ebpf, name)?;
            prog.load().map_err(|e| Error::Program {
                program: PROGRAM,
                interface: String::new(),
                source: Box::new(e),
            })?;
        }
        let mut balancer = Self {
            ebpf,
            pin_dir: opts.pin_dir.clone(),
            links: BTreeMap::new(),
        };
        balancer.ensure_flow_tables()?;
        balancer.restore_flows(&legacy_flows)?;
        // A fresh (or never configured) config entry gets the defaults; a pinned one is kept.
        if balancer.config()? == Config::default() {
            balancer.set_config(&default_config())?;
        }
        Ok(balancer)
    }

    /// The forwarding program, e.g. for BPF_PROG_TEST_RUN.
    pub fn program(&self) -> &Xdp {
        program(&self.ebpf, PROGRAM).expect("loaded in Balancer::load")
    }

    /// The empty benchmark anchor ([`Variant::Bench`] only).
    pub fn empty_program(&self) -> Option<&Xdp> {
        program(&self.ebpf, EMPTY_PROGRAM).ok()
    }

    /// The bench build's generator program, which sends every frame back out
    /// ([`Variant::Bench`] only).
    pub fn tx_program(&self) -> Option<&Xdp> {
        program(&self.ebpf, TX_PROGRAM).ok()
    }

    /// Sets the 64-byte frame the generator program writes into every frame it sends
    /// ([`Variant::Bench`] only).
    pub fn set_generator_frame(&mut self, frame: &[u8; 64]) -> Result<(), Error> {
        const NAME: &str = "herald_gen_tmpl";
        let mut map: Array<_, [u8; 64]> =
            Array::try_from(self.map_mut(NAME)?).map_err(map_err(NAME, "open"))?;
        map.set(0, frame, 0).map_err(map_err(NAME, "write"))
    }

    /// The bench build's programs by name (e.g. [`STAGE_PROGRAMS`]).
    pub fn bench_program(&self, name: &'static str) -> Option<&Xdp> {
        program(&self.ebpf, name).ok()
    }

    /// The bench build's programs by name, mutable (to attach them in benchmarks).
    pub fn bench_program_mut(&mut self, name: &'static str) -> Option<&mut Xdp> {
        program_mut(&mut self.ebpf, name).ok()
    }

    /// Packets the bench build's sink program has dropped (all CPUs).
    pub fn sink_count(&self) -> Result<u64, Error> {
        self.count("herald_gen_sink", 0)
    }

    /// The empty benchmark anchor, mutable (to attach it as a stand-in foreign program).
    pub fn empty_program_mut(&mut self) -> Option<&mut Xdp> {
        program_mut(&mut self.ebpf, EMPTY_PROGRAM).ok()
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut Map, Error> {
        self.ebpf
            .map_mut(name)
            .ok_or(Error::MissingMap { map: name })
    }

    fn map(&self, name: &'static str) -> Result<&Map, Error> {
        self.ebpf.map(name).ok_or(Error::MissingMap { map: name })
    }

    /// The program-wide settings.
    pub fn config(&self) -> Result<Config, Error> {
        let map: Array<_, Config> = Array::try_from(self.map(map_name::CONFIG)?)
            .map_err(map_err(map_name::CONFIG, "open"))?;
        map.get(&0, 0).map_err(map_err(map_name::CONFIG, "read"))
    }

    /// Replaces the program-wide settings.
    pub fn set_config(&mut self, config: &Config) -> Result<(), Error> {
        let mut map: Array<_, Config> = Array::try_from(self.map_mut(map_name::CONFIG)?)
            .map_err(map_err(map_name::CONFIG, "open"))?;
        map.set(0, config, 0)
            .map_err(map_err(map_name::CONFIG, "write"))
    }

    /// Adds or updates a VIP (address, port, protocol) with its id. The VIP forwards once its
    /// table is set ([`Balancer::set_table`]); until then its packets are dropped and counted.
    pub fn set_vip(&mut self, key: &VipKey, id: u32) -> Result<(), Error> {
        check(id, MAX_VIPS, "VIP id")?;
        // Filter bit first: the program must never skip a VIP it could find.
        let bit = vip_filter_bit(&key.addr);
        let mut word = self.filter_word(bit >> 6)?;
        word |= 1 << (bit & 63);
        self.set_filter_word(bit >> 6, word)?;
        let map: HashMap<_, VipKey, Vip> = HashMap::try_from(self.map(map_name::VIPS)?)
            .map_err(map_err(map_name::VIPS, "open"))?;
        match map.get(key, 0) {
            // Unchanged: its stored flows stay valid.
            Ok(vip) if vip.id == id && vip.generation != 0 => return Ok(()),
            _ => {}
        }
        // A new generation before the VIP appears under this id: flows stored for an earlier
        // VIP with the id stop matching.
        let generation = self.bump_vip_generation(id)?;
        let mut map: HashMap<_, VipKey, Vip> = HashMap::try_from(self.map_mut(map_name::VIPS)?)
            .map_err(map_err(map_name::VIPS, "open"))?;
        map.insert(key, Vip { id, generation }, 0)
            .map_err(map_err(map_name::VIPS, "insert"))
    }

    /// Moves VIP id `id` to its next generation (never 0), also in every VIP entry that
    /// still has the id (the program copies it from there into the flows it stores).
    fn bump_vip_generation(&mut self, id: u32) -> Result<u32, Error> {
        let name = map_name::VIP_GEN;
        let mut map: Array<_, u32> =
            Array::try_from(self.map_mut(name)?).map_err(map_err(name, "open"))?;
        let generation = match map
            .get(&id, 0)
            .map_err(map_err(name, "read"))?
            .wrapping_add(1)
        {
            0 => 1,
            g => g,
        };
        map.set(id, generation, 0).map_err(map_err(name, "write"))?;
        let mut vips: HashMap<_, VipKey, Vip> = HashMap::try_from(self.map_mut(map_name::VIPS)?)
            .map_err(map_err(map_name::VIPS, "open"))?;
        let sharing: Vec<VipKey> = vips
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, vip)| vip.id == id)
            .map(|(key, _)| key)
            .collect();
        for key in sharing {
            vips.insert(key, Vip { id, generation }, 0)
                .map_err(map_err(map_name::VIPS, "insert"))?;
        }
        Ok(generation)
    }

    /// Removes a VIP; its packets pass up untouched from then on.
    pub fn remove_vip(&mut self, key: &VipKey) -> Result<(), Error> {
        let mut map: HashMap<_, VipKey, Vip> = HashMap::try_from(self.map_mut(map_name::VIPS)?)
            .map_err(map_err(map_name::VIPS, "open"))?;
        let id = map.get(key, 0).map_err(map_err(map_name::VIPS, "read"))?.id;
        map.remove(key).map_err(map_err(map_name::VIPS, "remove"))?;
        // Then the filter word, recomputed from the VIPs left (another may share the bit).
        let index = vip_filter_bit(&key.addr) >> 6;
        let word = map
            .keys()
            .filter_map(Result::ok)
            .map(|k| vip_filter_bit(&k.addr))
            .filter(|bit| bit >> 6 == index)
            .fold(0u64, |w, bit| w | 1 << (bit & 63));
        self.set_filter_word(index, word)?;
        // After the VIP is gone: its stored flows stop matching, so packets of established
        // flows pass up like new ones (a flow stored meanwhile carries the old generation).
        self.bump_vip_generation(id).map(drop)
    }

    fn filter_word(&self, index: u32) -> Result<u64, Error> {
        let name = map_name::VIP_BITS;
        let map: Array<_, u64> = Array::try_from(self.map(name)?).map_err(map_err(name, "open"))?;
        map.get(&index, 0).map_err(map_err(name, "read"))
    }

    fn set_filter_word(&mut self, index: u32, word: u64) -> Result<(), Error> {
        let name = map_name::VIP_BITS;
        let mut map: Array<_, u64> =
            Array::try_from(self.map_mut(name)?).map_err(map_err(name, "open"))?;
        map.set(index, word, 0).map_err(map_err(name, "write"))
    }

    /// Sets backend `id`. Ids stay stable while a backend exists so flows keep pointing at it;
    /// reusing an id for another host moves the flows stored for the old one to it.
    ///
    /// The `generation` of `backend` is ignored: it is bumped here whenever the address or
    /// family changes, which makes the program look the next hop up again at once.
    pub fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), Error> {
        check(id, MAX_BACKENDS, "backend id")?;
        let mut map: Array<_, Backend> = Array::try_from(self.map_mut(map_name::BACKENDS)?)
            .map_err(map_err(map_name::BACKENDS, "open"))?;
        let old = map
            .get(&id, 0)
            .map_err(map_err(map_name::BACKENDS, "read"))?;
        let mut new = *backend;
        new.generation = if (old.addr, old.family) == (new.addr, new.family) {
            old.generation
        } else {
            old.generation.wrapping_add(1)
        };
        map.set(id, new, 0)
            .map_err(map_err(map_name::BACKENDS, "write"))
    }

    /// Clears backend `id`: flows pinned to it fall back to their VIP's table.
    pub fn remove_backend(&mut self, id: u32) -> Result<(), Error> {
        self.set_backend(id, &Backend::default())
    }

    /// The VIPs the program knows, with their ids (for example kept in pinned maps from a
    /// previous run).
    pub fn vips(&self) -> Result<Vec<(VipKey, u32)>, Error> {
        let map: HashMap<_, VipKey, Vip> = HashMap::try_from(self.map(map_name::VIPS)?)
            .map_err(map_err(map_name::VIPS, "open"))?;
        map.iter()
            .map(|r| r.map(|(k, v)| (k, v.id)))
            .collect::<Result<_, _>>()
            .map_err(map_err(map_name::VIPS, "read"))
    }

    /// The backend slots in use, with what they hold.
    pub fn backends(&self) -> Result<Vec<(u32, Backend)>, Error> {
        let map: Array<_, Backend> = Array::try_from(self.map(map_name::BACKENDS)?)
            .map_err(map_err(map_name::BACKENDS, "open"))?;
        let mut out = Vec::new();
        for id in 0..MAX_BACKENDS {
            let b = map
                .get(&id, 0)
                .map_err(map_err(map_name::BACKENDS, "read"))?;
            if b.family != 0 {
                out.push((id, b));
            }
        }
        Ok(out)
    }

    /// Installs `table` (backend ids, one per Maglev slot, as built by the speaker) for VIP
    /// `vip_id`. The table is written to a new map which then replaces the old one in a single
    /// update, so the program sees either the old table or the new one, never a mix.
    pub fn set_table(&mut self, vip_id: u32, table: &[u32]) -> Result<(), Error> {
        check(vip_id, MAX_VIPS, "VIP id")?;
        let size = u32::try_from(table.len()).unwrap_or(u32::MAX);
        if size == 0 || size > MAGLEV_MAX_SIZE {
            return Err(Error::OutOfRange {
                what: "table size",
                value: table.len() as u64,
                limit: MAGLEV_MAX_SIZE.into(),
            });
        }
        let mut inner: Array<MapData, u32> = Array::create(size + 1, BPF_F_INNER_MAP)
            .map_err(map_err(map_name::MAGLEV, "create table"))?;
        inner
            .set(0, size, 0)
            .map_err(map_err(map_name::MAGLEV, "write table size"))?;
        for (i, id) in table.iter().enumerate() {
            inner
                .set(i as u32 + 1, id, 0)
                .map_err(map_err(map_name::MAGLEV, "write table"))?;
        }
        let mut outer: ArrayOfMaps<_, Array<MapData, u32>> =
            ArrayOfMaps::try_from(self.map_mut(map_name::MAGLEV)?)
                .map_err(map_err(map_name::MAGLEV, "open"))?;
        outer
            .set(vip_id, &inner, 0)
            .map_err(map_err(map_name::MAGLEV, "swap table"))
    }

    fn count(&self, name: &'static str, index: u32) -> Result<u64, Error> {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.map(name)?).map_err(map_err(name, "open"))?;
        let per_cpu = map.get(&index, 0).map_err(map_err(name, "read"))?;
        Ok(per_cpu.iter().sum())
    }

    /// Counters of VIP `id` (all CPUs).
    pub fn vip_stats(&self, id: u32) -> Result<VipStats, Error> {
        check(id, MAX_VIPS, "VIP id")?;
        let name = map_name::VIP_STATS;
        let map: PerCpuArray<_, VipStats> =
            PerCpuArray::try_from(self.map(name)?).map_err(map_err(name, "open"))?;
        let per_cpu = map.get(&id, 0).map_err(map_err(name, "read"))?;
        Ok(per_cpu.iter().fold(VipStats::default(), |a, c| VipStats {
            packets: a.packets + c.packets,
            bytes: a.bytes + c.bytes,
            lru_hit: a.lru_hit + c.lru_hit,
            lru_miss: a.lru_miss + c.lru_miss,
        }))
    }

    /// Flow-table hits and misses over every VIP (all CPUs): `(hits, misses)`.
    pub fn lru_stats(&self) -> Result<(u64, u64), Error> {
        let mut total = (0, 0);
        for id in 0..MAX_VIPS {
            let s = self.vip_stats(id)?;
            total.0 += s.lru_hit;
            total.1 += s.lru_miss;
        }
        Ok(total)
    }

    /// Packets and bytes sent to backend `id` (all CPUs).
    pub fn backend_counter(&self, id: u32) -> Result<Counter, Error> {
        check(id, MAX_BACKENDS, "backend id")?;
        let name = map_name::BE_STATS;
        let map: PerCpuArray<_, BackendStats> =
            PerCpuArray::try_from(self.map(name)?).map_err(map_err(name, "open"))?;
        let per_cpu = map.get(&id, 0).map_err(map_err(name, "read"))?;
        Ok(per_cpu.iter().fold(Counter::default(), |a, c| Counter {
            packets: a.packets + c.packets,
            bytes: a.bytes + c.bytes,
        }))
    }

    /// VIP packets dropped for `reason` (all CPUs).
    pub fn drops(&self, reason: DropReason) -> Result<u64, Error> {
        self.count(map_name::DROPS, reason as u32)
    }

    /// How often `event` happened (all CPUs).
    pub fn events(&self, event: Event) -> Result<u64, Error> {
        self.count(map_name::EVENTS, event as u32)
    }

    fn link_pin(&self, interface: &str) -> Option<PathBuf> {
        self.pin_dir
            .as_ref()
            .map(|d| d.join(format!("link_xdp_{interface}")))
    }

    /// Attaches the program to `interface` in `mode` (native: [`XdpMode::Driver`], generic:
    /// [`XdpMode::Skb`]). If this balancer's pin directory holds an attachment for the
    /// interface (a previous run), the new program replaces the old one in it atomically.
    /// Another program attached to the interface is never displaced: that is
    /// [`Error::ForeignXdp`].
    pub fn attach(&mut self, interface: &str, mode: XdpMode) -> Result<(), Error> {
        let pin = self.link_pin(interface);
        let prog_err = |e| Error::Program {
            program: PROGRAM,
            interface: interface.to_owned(),
            source: Box::new(e),
        };
        if let Some(path) = &pin
            && let Ok(old) = PinnedLink::from_pin(path)
        {
            let link = XdpLink::try_from(FdLink::from(old)).map_err(|e| Error::Link {
                path: path.clone(),
                source: Box::new(e),
            })?;
            let prog: &mut Xdp = program_mut(&mut self.ebpf, PROGRAM)?;
            let id = prog.attach_to_link(link).map_err(prog_err)?;
            // The pin keeps the attachment; dropping our handle only closes its descriptor.
            drop(prog.take_link(id).map_err(prog_err)?);
            return Ok(());
        }
        let prog: &mut Xdp = program_mut(&mut self.ebpf, PROGRAM)?;
        let id = match prog.attach(interface, mode) {
            Ok(id) => id,
            Err(e) if is_busy(&e) => {
                return Err(Error::ForeignXdp {
                    interface: interface.to_owned(),
                    program: attached_xdp_program(interface)
                        .unwrap_or_else(|| "(unknown)".to_owned()),
                });
            }
            Err(e) => return Err(prog_err(e)),
        };
        match pin {
            Some(path) => {
                let link = prog.take_link(id).map_err(prog_err)?;
                let fd_link = FdLink::try_from(link).map_err(|e| Error::Link {
                    path: path.clone(),
                    source: Box::new(e),
                })?;
                fd_link.pin(&path).map_err(|e| Error::Link {
                    path: path.clone(),
                    source: Box::new(e),
                })?;
            }
            None => {
                self.links.insert(interface.to_owned(), id);
            }
        }
        Ok(())
    }

    /// Detaches the program from `interface` (pinned attachment included). Detaching an
    /// interface the balancer is not attached to is not an error.
    pub fn detach(&mut self, interface: &str) -> Result<(), Error> {
        if let Some(id) = self.links.remove(interface) {
            let prog: &mut Xdp = program_mut(&mut self.ebpf, PROGRAM)?;
            prog.detach(id).map_err(|e| Error::Program {
                program: PROGRAM,
                interface: interface.to_owned(),
                source: Box::new(e),
            })?;
        }
        if let Some(path) = self.link_pin(interface)
            && let Ok(link) = PinnedLink::from_pin(&path)
        {
            // Unpinning drops the last reference: the kernel detaches the program.
            link.unpin().map_err(|e| Error::Link {
                path,
                source: Box::new(e),
            })?;
        }
        Ok(())
    }

    /// Removes every pinned map of this balancer (not attachments: detach those first). Used
    /// to retire a data plane, and by tests to leave nothing behind.
    pub fn unpin_all(self) -> Result<(), Error> {
        let Some(dir) = self.pin_dir.clone() else {
            return Ok(());
        };
        drop(self);
        for name in map_name::XDP_MAPS {
            remove_if_exists(&dir.join(name))?;
        }
        Ok(())
    }
}

/// The map's own data, for the kinds of maps the balancer has.
fn map_data(map: &Map) -> Option<&MapData> {
    match map {
        Map::Array(m)
        | Map::ArrayOfMaps(m)
        | Map::HashMap(m)
        | Map::LruHashMap(m)
        | Map::PerCpuArray(m)
        | Map::PerCpuHashMap(m)
        | Map::PerCpuLruHashMap(m) => Some(m),
        _ => None,
    }
}

/// Refuses maps pinned under `dir` whose key size, value size or capacity differ from what
/// `object` defines: reusing them would make the verifier reject the program with an obscure
/// log, or worse, let it read records of another layout.
fn check_pins(dir: &Path, object: &[u8]) -> Result<(), Error> {
    let pinned: Vec<&str> = map_name::XDP_MAPS
        .into_iter()
        .filter(|name| dir.join(name).exists())
        .collect();
    if pinned.is_empty() {
        return Ok(());
    }
    // The object's maps as this build defines them (created, no program loaded).
    let fresh = EbpfLoader::new().load(object).map_err(|e| Error::Load {
        object: PROGRAM,
        source: Box::new(e),
    })?;
    let shape = |key: u32, value: u32, entries: u32| {
        format!("key {key} B, value {value} B, {entries} entries")
    };
    for name in pinned {
        let path = dir.join(name);
        let old = MapInfo::from_pin(&path).map_err(map_err(name, "read pinned map info"))?;
        let Some(new) = fresh.map(name).and_then(map_data) else {
            continue;
        };
        let new = new.info().map_err(map_err(name, "read map info"))?;
        let (found, wanted) = (
            shape(old.key_size(), old.value_size(), old.max_entries()),
            shape(new.key_size(), new.value_size(), new.max_entries()),
        );
        if found != wanted {
            return Err(Error::IncompatiblePin {
                path,
                dir: dir.to_owned(),
                found,
                wanted,
            });
        }
        // The flow tables inside a pinned herald_flows come from the build that made them.
        if name == map_name::FLOWS {
            let outer = MapData::from_pin(&path).map_err(map_err(name, "open pinned map"))?;
            let (key, value, kind) = flows::table_shape();
            if let Some(old) = flows::pinned_table_shape(outer)?
                && old != (key, value, kind)
            {
                let table = |(k, v, t): (u32, u32, u32)| {
                    format!("flow tables of map type {t}, key {k} B, value {v} B")
                };
                return Err(Error::IncompatiblePin {
                    path,
                    dir: dir.to_owned(),
                    found: table(old),
                    wanted: table((key, value, kind)),
                });
            }
        }
    }
    Ok(())
}

fn remove_if_exists(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Bpffs {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

fn check(value: u32, limit: u32, what: &'static str) -> Result<(), Error> {
    if value >= limit {
        return Err(Error::OutOfRange {
            what,
            value: value.into(),
            limit: (limit - 1).into(),
        });
    }
    Ok(())
}

fn map_err(map: &'static str, what: &'static str) -> impl Fn(aya::maps::MapError) -> Error {
    move |e| Error::Map {
        map,
        what: what.to_owned(),
        source: Box::new(e),
    }
}

fn program<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a Xdp, Error> {
    ebpf.program(name)
        .and_then(|p| <&Xdp>::try_from(p).ok())
        .ok_or(Error::MissingProgram { program: name })
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, Error> {
    ebpf.program_mut(name)
        .and_then(|p| <&mut Xdp>::try_from(p).ok())
        .ok_or(Error::MissingProgram { program: name })
}

/// The kernel refuses a second XDP program with EBUSY (bpf_link) or EEXIST (netlink with
/// XDP_FLAGS_UPDATE_IF_NOEXIST).
fn is_busy(e: &aya::programs::ProgramError) -> bool {
    const EBUSY: i32 = 16;
    const EEXIST: i32 = 17;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        let code = err
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
            .or_else(|| {
                err.downcast_ref::<aya::sys::SyscallError>()
                    .and_then(|s| s.io_error.raw_os_error())
            });
        if matches!(code, Some(EBUSY | EEXIST)) {
            return true;
        }
        source = err.source();
    }
    false
}

/// Names the XDP program attached to `interface`, from `ip -d link show` (`prog/xdp id N
/// name NAME`), for the error message only.
fn attached_xdp_program(interface: &str) -> Option<String> {
    let out = std::process::Command::new("ip")
        .args(["-d", "link", "show", "dev", interface])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w.starts_with("prog/xdp") {
            let rest: Vec<&str> = words.by_ref().take(4).collect();
            let id = rest
                .iter()
                .position(|w| *w == "id")
                .and_then(|i| rest.get(i + 1));
            let name = rest
                .iter()
                .position(|w| *w == "name")
                .and_then(|i| rest.get(i + 1));
            return Some(match (name, id) {
                (Some(n), Some(i)) => format!("{n} (id {i})"),
                (None, Some(i)) => format!("id {i}"),
                _ => "(unknown)".to_owned(),
            });
        }
    }
    None
}

//! `#[repr(C)]` mirrors of the structs and constants in `include/herald.h`, the only types
//! that cross between the eBPF programs and user space. The `abi_matches_header` test
//! compares every size, offset and constant with what clang computes from the header.
//!
//! Byte order follows the header: addresses and ports as on the wire (network order), an
//! IPv4 address in the first 4 bytes of a 16-byte field; everything else host order.
//
// aya reads and writes map values as raw bytes and asks for `unsafe impl Pod` on them; this
// module holds those impls and nothing else unsafe.
#![allow(unsafe_code)]

use std::net::IpAddr;

/// VIP ids run from 0 to this value - 1.
pub const MAX_VIPS: u32 = 1024;
/// Backend ids run from 0 to this value - 1.
pub const MAX_BACKENDS: u32 = 4096;
/// Capacity of the flow tables, entries, all CPUs together: each CPU's table holds this
/// divided by the number of tables, rounded up (`balancer::table_capacity`).
pub const MAX_FLOWS: u32 = 262_144;
/// Slots of the `herald_flows` array of maps: one flow table per possible CPU up to this
/// many; a CPU with a higher id shares table `id % MAX_CPUS`.
pub const MAX_CPUS: u32 = 128;
/// Slots of each CPU's flow cache (`herald_fcache`), a power of two.
pub const FLOW_CACHE_SLOTS: u32 = 4096;
/// Maglev table size unless configured otherwise.
pub const MAGLEV_DEFAULT_SIZE: u32 = 65_537;
/// Largest Maglev table size the program accepts.
pub const MAGLEV_MAX_SIZE: u32 = 16_777_216;
/// Words (u64) of the VIP address filter.
pub const VIP_FILTER_WORDS: u32 = 1024;
/// Seed of the flow hash.
pub const HASH_SEED: u32 = 0x6865_726c;

/// Address family tag for IPv4 in keys.
pub const FAMILY_V4: u8 = 4;
/// Address family tag for IPv6 in keys.
pub const FAMILY_V6: u8 = 6;
/// [`Backend::flags`]: the backend is this host, packets go up the local stack.
pub const BACKEND_LOCAL: u8 = 1;

/// Why a VIP packet was dropped: index into the `herald_drops` counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum DropReason {
    /// VIP without a table, an empty table, or an unknown backend id.
    NoBackend = 0,
    /// The backend's address family differs from the packet's.
    Family = 1,
    /// No route to the backend, or forwarding disabled.
    Fib = 2,
    /// Route found but the next hop's MAC is not resolved.
    NoNeigh = 3,
    /// The frame could not be grown or shrunk.
    Headroom = 4,
    /// Too big to forward and no ICMP answer possible.
    TooBig = 5,
}

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [DropReason; 6] = [
        Self::NoBackend,
        Self::Family,
        Self::Fib,
        Self::NoNeigh,
        Self::Headroom,
        Self::TooBig,
    ];
}

/// Size of the `herald_drops` array.
pub const DROP_MAX: u32 = 8;

/// Rarer things that happened to VIP packets: index into the `herald_events` counters.
/// (Flow-table hits and misses are in [`VipStats`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Event {
    /// A new flow was not stored: this CPU was over its new-flow rate.
    FlowSkipped = 0,
    /// An ICMP fragmentation-needed / packet-too-big answer was sent.
    IcmpTooBig = 1,
    /// An ICMP error was forwarded to its flow's backend.
    IcmpFollowed = 2,
    /// A VIP packet was passed to the local stack (local backend).
    Local = 3,
}

/// Size of the `herald_events` array.
pub const EV_MAX: u32 = 8;

/// Map names, shared with the C side (`HERALD_MAP_*`).
pub mod map_name {
    /// (address, port, protocol) -> VIP.
    pub const VIPS: &str = "herald_vips";
    /// Backend id -> backend host.
    pub const BACKENDS: &str = "herald_backends";
    /// VIP id -> Maglev table (map of maps).
    pub const MAGLEV: &str = "herald_maglev";
    /// CPU -> that CPU's flow table (array of maps; each table 5-tuple -> backend, LRU).
    pub const FLOWS: &str = "herald_flows";
    /// Program-wide settings.
    pub const CONFIG: &str = "herald_config";
    /// Per-VIP counters.
    pub const VIP_STATS: &str = "herald_vip_stat";
    /// Per-backend counters.
    pub const BE_STATS: &str = "herald_be_stats";
    /// Drops per reason.
    pub const DROPS: &str = "herald_drops";
    /// Events (flow table hits and misses, ICMP answers).
    pub const EVENTS: &str = "herald_events";
    /// Per-CPU new-flow rate window.
    pub const FLOOD: &str = "herald_flood";
    /// Decapsulation counters (decap program).
    pub const DECAP_STATS: &str = "herald_decap_st";
    /// The VIP address filter (one bit per address hash).
    pub const VIP_BITS: &str = "herald_vip_bits";
    /// VIP id -> generation, so stored flows of a removed VIP stop matching.
    pub const VIP_GEN: &str = "herald_vip_gen";
    /// Each CPU's flow cache: the flows it forwarded lately, in front of its flow table.
    pub const FLOW_CACHE: &str = "herald_fcache";
    /// Every map of the XDP program, the ones pinned under the pin directory.
    pub const XDP_MAPS: [&str; 13] = [
        VIPS, VIP_BITS, VIP_GEN, BACKENDS, MAGLEV, FLOWS, FLOW_CACHE, CONFIG, VIP_STATS, BE_STATS,
        DROPS, EVENTS, FLOOD,
    ];
}

/// Key of `herald_vips`: `struct herald_vip_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct VipKey {
    /// Address, network order; IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    /// Port, network order; 0 = all ports.
    pub port: u16,
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
}

/// Value of `herald_vips`: `struct herald_vip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Vip {
    /// Index into `herald_maglev` and the per-VIP counters.
    pub id: u32,
    /// `herald_vip_gen[id]` when the VIP was set (never 0); flows stored for it carry it.
    pub generation: u32,
}

/// Value of `herald_backends`: `struct herald_backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Backend {
    /// Backend host address, network order.
    pub addr: [u8; 16],
    /// [`FAMILY_V4`] / [`FAMILY_V6`]; 0 marks an unused slot.
    pub family: u8,
    /// `BACKEND_*` flags.
    pub flags: u8,
    /// Changed whenever `addr` changes, so the program drops cached next hops at once
    /// ([`crate::Balancer::set_backend`] takes care of it).
    pub generation: u16,
}

/// Key of the flow tables (`herald_flows`) and input of the flow hash: `struct herald_flow_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct FlowKey {
    /// Client address, network order.
    pub src: [u8; 16],
    /// VIP address, network order.
    pub dst: [u8; 16],
    /// Client port, network order.
    pub sport: u16,
    /// VIP port, network order.
    pub dport: u16,
    /// IP protocol number.
    pub proto: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Explicit padding, 0.
    pub pad: [u8; 2],
}

/// Value of the flow tables (`herald_flows`): `struct herald_flow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Flow {
    /// Backend id.
    pub backend: u32,
    /// VIP id.
    pub vip: u32,
    /// The flow hash of the key ([`crate::hash::flow_hash`]), stored so a flow-table hit
    /// does not compute it again.
    pub hash: u32,
    /// The VIP's generation ([`Vip::generation`]) when the flow was stored.
    pub vip_gen: u32,
}

/// One slot of a CPU's flow cache (`herald_fcache`): `struct herald_flow_cached`. A flow is
/// cached by its first packet and stored in the flow table by its second; until then it is
/// pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct FlowCached {
    /// The flow's key.
    pub key: FlowKey,
    /// The flow, as the flow table holds it.
    pub flow: Flow,
    /// 1 while the flow has been seen once and is not in the flow table yet.
    pub pending: u32,
    /// Explicit padding, 0.
    pub pad: u32,
}

/// Per-CPU counters of one VIP: `struct herald_vip_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct VipStats {
    /// Packets received for the VIP.
    pub packets: u64,
    /// Bytes (frame length as received).
    pub bytes: u64,
    /// Packets whose backend came from the flow cache or the flow table.
    pub lru_hit: u64,
    /// Packets whose backend came from the Maglev table (every TCP SYN included).
    pub lru_miss: u64,
}

/// Per-CPU state of one backend: `struct herald_backend_stats`. User space reads the
/// counters; the `nh_*` fields are the program's next-hop cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct BackendStats {
    /// Packets sent to the backend.
    pub packets: u64,
    /// Bytes (frame length as received).
    pub bytes: u64,
    /// Cache: stale after this time in jiffies (`bpf_jiffies64`).
    pub nh_expires: u64,
    /// Cache: egress interface.
    pub nh_ifindex: u32,
    /// Cache: ingress interface the lookup was made for.
    pub nh_iif: u32,
    /// Cache: longest outer packet checked against the route's MTU.
    pub nh_ok_len: u32,
    /// Cache: next hop's MAC.
    pub nh_dmac: [u8; 6],
    /// Cache: egress interface's MAC.
    pub nh_smac: [u8; 6],
    /// Cache: the backend generation it was filled for.
    pub nh_generation: u16,
    /// Explicit padding.
    pub pad: [u8; 2],
}

/// Per-CPU packet and byte counter: `struct herald_counter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes (frame length as received).
    pub bytes: u64,
}

/// `herald_config[0]`: `struct herald_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Config {
    /// Outer IPv4 source; its last two bytes are replaced by the flow hash.
    pub encap_src4: [u8; 4],
    /// Outer IPv6 source; its last four bytes are replaced by the flow hash.
    pub encap_src6: [u8; 16],
    /// New flows per second and CPU above which flows are not stored (0 = no limit).
    pub max_new_flows: u32,
    /// Reserved, 0.
    pub flags: u32,
}

/// `herald_flood[0]` per CPU: `struct herald_flood`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct Flood {
    /// Start of the current one-second window, `bpf_ktime_get_ns` clock.
    pub window_start_ns: u64,
    /// New flows seen in the window.
    pub count: u64,
}

// SAFETY: each type is #[repr(C)], Copy, made only of integers and integer arrays, with every
// byte covered by a field (explicit padding, checked by the layout test), so any bit pattern
// is a valid value and reading one as bytes exposes no uninitialised memory.
unsafe impl aya::Pod for VipKey {}
// SAFETY: as above.
unsafe impl aya::Pod for Vip {}
// SAFETY: as above.
unsafe impl aya::Pod for Backend {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowKey {}
// SAFETY: as above.
unsafe impl aya::Pod for Flow {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowCached {}
// SAFETY: as above.
unsafe impl aya::Pod for Counter {}
// SAFETY: as above.
unsafe impl aya::Pod for VipStats {}
// SAFETY: as above.
unsafe impl aya::Pod for BackendStats {}
// SAFETY: as above.
unsafe impl aya::Pod for Config {}
// SAFETY: as above.
unsafe impl aya::Pod for Flood {}

/// The family tag and the 16-byte field form of an address.
pub fn addr_bytes(addr: IpAddr) -> (u8, [u8; 16]) {
    let mut out = [0u8; 16];
    match addr {
        IpAddr::V4(a) => {
            out[..4].copy_from_slice(&a.octets());
            (FAMILY_V4, out)
        }
        IpAddr::V6(a) => (FAMILY_V6, a.octets()),
    }
}

impl VipKey {
    /// The key of a VIP; `port` 0 means every port of `proto`.
    pub fn new(addr: IpAddr, port: u16, proto: u8) -> Self {
        let (family, addr) = addr_bytes(addr);
        Self {
            addr,
            port: port.to_be(),
            proto,
            family,
        }
    }
}

impl Backend {
    /// A backend host; `local` marks this host.
    pub fn new(addr: IpAddr, local: bool) -> Self {
        let (family, addr) = addr_bytes(addr);
        Self {
            addr,
            family,
            flags: if local { BACKEND_LOCAL } else { 0 },
            generation: 0,
        }
    }
}

impl FlowKey {
    /// The key of a client's flow to a VIP (ports in host order here).
    pub fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, proto: u8) -> Self {
        let (family, src) = addr_bytes(src);
        let (_, dst) = addr_bytes(dst);
        Self {
            src,
            dst,
            sport: sport.to_be(),
            dport: dport.to_be(),
            proto,
            family,
            pad: [0; 2],
        }
    }
}

#[cfg(test)]
mod tests;

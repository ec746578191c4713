/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Everything the Herald eBPF programs share with user space: map names, limits, counter
 * indices and the layout of every key and value. The Rust side (herald-ebpf `abi`) mirrors
 * each struct with #[repr(C)] and a test compares sizes and offsets against this file.
 *
 * Rules: fixed-width fields only, explicit padding, no bool/enum/pointer fields. Addresses
 * and ports are in network byte order (as on the wire); an IPv4 address sits in the first
 * 4 bytes of a 16-byte field with the other 12 bytes zero. Everything else is host order.
 */
#ifndef HERALD_H
#define HERALD_H

#include <linux/types.h>

/* ---- limits ---- */
/* VIP ids index herald_maglev and herald_vip_stats: 0 .. HERALD_MAX_VIPS-1. */
#define HERALD_MAX_VIPS 1024
/* Backend ids index herald_backends and herald_be_stats: 0 .. HERALD_MAX_BACKENDS-1. */
#define HERALD_MAX_BACKENDS 4096
/*
 * Flow table capacity (entries, all CPUs together). Each CPU has a table of its own
 * (herald_flows is a map of maps indexed by CPU id); user space sizes each one
 * HERALD_MAX_FLOWS / (number of tables), rounded up.
 */
#define HERALD_MAX_FLOWS 262144
/*
 * Flow tables (slots of herald_flows): one per possible CPU up to this many, a power of two.
 * A CPU with a higher id shares table (id % HERALD_MAX_CPUS) with a lower one: an LRU hash is
 * safe to share, it only contends on its lock.
 */
#define HERALD_MAX_CPUS 128
/*
 * Slots of each CPU's flow cache (herald_fcache), a power of two: the flows this CPU saw last,
 * direct-mapped by herald_flow_cache_slot, in front of its flow table.
 */
#define HERALD_FLOW_CACHE_SLOTS 4096
/* Maglev table size used unless configured otherwise (a prime). */
#define HERALD_MAGLEV_DEFAULT_SIZE 65537
/* Largest Maglev table the program accepts (slots; the inner map has one more entry). */
#define HERALD_MAGLEV_MAX_SIZE 16777216
/* Words (u64) of the VIP address filter herald_vip_bits: 65536 bits. */
#define HERALD_VIP_FILTER_WORDS 1024
/* Seed of the flow hash (Jenkins lookup3 `hashword` over herald_flow_key, see below). */
#define HERALD_HASH_SEED 0x6865726cU
/* Bytes of the offending packet quoted in an ICMPv6 packet-too-big answer. */
#define HERALD_ICMP6_QUOTE 128
/* Bytes of the offending packet quoted in an ICMPv4 fragmentation-needed answer. */
#define HERALD_ICMP4_QUOTE 28

/* ---- map names (the C identifiers below; user space finds and pins maps by them) ---- */
#define HERALD_MAP_VIPS "herald_vips"
#define HERALD_MAP_BACKENDS "herald_backends"
#define HERALD_MAP_MAGLEV "herald_maglev"
#define HERALD_MAP_FLOWS "herald_flows"
#define HERALD_MAP_CONFIG "herald_config"
#define HERALD_MAP_VIP_STATS "herald_vip_stat"
#define HERALD_MAP_BE_STATS "herald_be_stats"
#define HERALD_MAP_DROPS "herald_drops"
#define HERALD_MAP_EVENTS "herald_events"
#define HERALD_MAP_FLOOD "herald_flood"
#define HERALD_MAP_DECAP_STATS "herald_decap_st"
#define HERALD_MAP_VIP_BITS "herald_vip_bits"
#define HERALD_MAP_VIP_GEN "herald_vip_gen"
#define HERALD_MAP_FLOW_CACHE "herald_fcache"

/* ---- address families in keys (not AF_* values: these are stable on the wire) ---- */
#define HERALD_FAMILY_V4 4
#define HERALD_FAMILY_V6 6

/* ---- herald_backend.flags ---- */
/* The backend is this host: packets go up the local stack instead of being encapsulated. */
#define HERALD_BACKEND_LOCAL 1

/* ---- herald_drops indices: why a VIP packet was dropped ---- */
#define HERALD_DROP_NO_BACKEND 0 /* VIP without a table, empty table or unknown backend id */
#define HERALD_DROP_FAMILY 1     /* backend family differs from the packet's */
#define HERALD_DROP_FIB 2        /* no route to the backend (or forwarding disabled) */
#define HERALD_DROP_NO_NEIGH 3   /* route found, next hop MAC not resolved yet */
#define HERALD_DROP_HEADROOM 4   /* could not grow/shrink the frame */
#define HERALD_DROP_TOO_BIG 5    /* too big and no ICMP answer possible (e.g. an ICMP error) */
#define HERALD_DROP_MAX 8

/*
 * ---- herald_events indices: rarer things that happened, for observability ----
 * (Flow-table hits and misses are counted per VIP in struct herald_vip_stats, which the fast
 * path touches anyway: one per-CPU lookup less per packet.)
 */
#define HERALD_EV_FLOW_SKIPPED 0    /* new flow not stored: over the per-CPU new-flow rate */
#define HERALD_EV_ICMP_TOO_BIG 1    /* ICMP frag-needed / packet-too-big answers sent */
#define HERALD_EV_ICMP_FOLLOWED 2   /* ICMP errors forwarded to their flow's backend */
#define HERALD_EV_LOCAL 3           /* VIP packets passed to the local stack (local backend) */
#define HERALD_EV_MAX 8

/* Key of herald_vips. A VIP with port 0 matches every port of its protocol. */
struct herald_vip_key {
	__u8 addr[16]; /* network order */
	__be16 port;   /* network order, 0 = all ports */
	__u8 proto;    /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;   /* HERALD_FAMILY_V4 / _V6 */
};

/* Value of herald_vips. */
struct herald_vip {
	__u32 id;         /* index into herald_maglev and herald_vip_stats */
	__u32 generation; /* herald_vip_gen[id] when this VIP was set (never 0) */
};

/* Value of herald_backends (index = backend id). family 0 = unused slot. */
struct herald_backend {
	__u8 addr[16]; /* backend host address, network order */
	__u8 family;   /* HERALD_FAMILY_V4 / _V6, 0 = unused */
	__u8 flags;    /* HERALD_BACKEND_* */
	/* Changed by user space whenever addr changes: invalidates cached next hops at once. */
	__u16 generation;
};

/*
 * Key of the flow tables (herald_flows) and input of the flow hash: the packet's 5-tuple as the client sent it
 * (for an ICMP error, the tuple of the quoted packet with source and destination swapped).
 */
struct herald_flow_key {
	__u8 src[16];
	__u8 dst[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

/* Value of the flow tables (herald_flows). */
struct herald_flow {
	__u32 backend; /* backend id */
	__u32 vip;     /* VIP id, so user space can flush a VIP's flows */
	__u32 hash;    /* herald_flow_hash of the key: a flow-table hit need not recompute it */
	/*
	 * The VIP's generation when the flow was stored. A packet of a stored flow skips the VIP
	 * lookup while herald_vip_gen[vip] still equals it; user space changes that entry when
	 * the VIP is removed (or its id reused), which retires the VIP's flows at once.
	 */
	__u32 vip_gen;
};

/*
 * One slot of a CPU's flow cache (herald_fcache): a flow this CPU forwarded lately. A flow
 * is cached by its first packet and enters the flow table (herald_flows) with its second:
 * until then it is `pending`. So a SYN costs a 64-byte write instead of a table insert, and
 * packets that never get an answer (a SYN flood, a one-packet UDP query) never fill or evict
 * the table. A flow the cache has lost (another flow took its slot) is still in the table,
 * unless it was pending: then its next packet takes the VIP's Maglev table again.
 */
struct herald_flow_cached {
	struct herald_flow_key key;
	struct herald_flow flow;
	__u32 pending; /* 1: seen once, not in the flow table yet */
	__u32 pad;
};

/* Per-CPU counters of one VIP (herald_vip_stat). */
struct herald_vip_stats {
	__u64 packets;
	__u64 bytes;
	__u64 lru_hit;  /* the flow cache or flow table gave the backend */
	__u64 lru_miss; /* the Maglev table gave the backend (every TCP SYN included) */
};

/*
 * Per-CPU state of one backend (herald_be_stats): its counters, and the program's cache of
 * the next hop bpf_fib_lookup gave for it (nh_*: private to the program, user space ignores
 * them). Kept together so a forwarded packet touches one per-CPU entry for both.
 */
struct herald_backend_stats {
	__u64 packets;
	__u64 bytes;
	__u64 nh_expires;    /* jiffies (bpf_jiffies64); the cache is stale after this */
	__u32 nh_ifindex;    /* egress interface */
	__u32 nh_iif;        /* ingress interface the lookup was made for */
	__u32 nh_ok_len;     /* longest outer packet checked against the route's MTU */
	__u8 nh_dmac[6];
	__u8 nh_smac[6];
	__u16 nh_generation; /* herald_backend.generation the cache was filled for */
	__u8 pad[2];
};

/*
 * How long a cached next hop is used before bpf_fib_lookup is asked again, in jiffies: 100 ms
 * at HZ=250 (Debian's kernels), 25 ms at HZ=1000, 250 ms at HZ=100.
 */
#define HERALD_NEXTHOP_TTL_JIFFIES 25ULL

/* Per-CPU packet/byte counter (herald_decap_st). */
struct herald_counter {
	__u64 packets;
	__u64 bytes;
};

/* herald_config[0]: settings for the whole program. */
struct herald_config {
	/* Outer IPv4 source: these 4 bytes with the last 2 replaced by the flow hash. */
	__u8 encap_src4[4];
	/* Outer IPv6 source: these 16 bytes with the last 4 replaced by the flow hash. */
	__u8 encap_src6[16];
	/* New flows per second and CPU above which flows are not stored (0 = no limit). */
	__u32 max_new_flows;
	__u32 flags; /* reserved, 0 */
};

/* herald_flood[0], per CPU: new flows counted in the current one-second window. */
struct herald_flood {
	__u64 window_start_ns;
	__u64 count;
};

/*
 * The flow hash: Bob Jenkins' lookup3 `hashword` over the 10 32-bit words of
 * herald_flow_key (src, dst, ports, proto/family/pad) read in host byte order, with
 * HERALD_HASH_SEED. The backend of a new flow is table[1 + hash % M]; user space mirrors this
 * function (herald-ebpf `hash`) to predict choices.
 */
#define HERALD_ROT(x, k) (((x) << (k)) | ((x) >> (32 - (k))))
#define HERALD_MIX(a, b, c)                                                                  \
	do {                                                                                 \
		a -= c; a ^= HERALD_ROT(c, 4); c += b;                                       \
		b -= a; b ^= HERALD_ROT(a, 6); a += c;                                       \
		c -= b; c ^= HERALD_ROT(b, 8); b += a;                                       \
		a -= c; a ^= HERALD_ROT(c, 16); c += b;                                      \
		b -= a; b ^= HERALD_ROT(a, 19); a += c;                                      \
		c -= b; c ^= HERALD_ROT(b, 4); b += a;                                       \
	} while (0)
#define HERALD_FINAL(a, b, c)                                                                \
	do {                                                                                 \
		c ^= b; c -= HERALD_ROT(b, 14);                                              \
		a ^= c; a -= HERALD_ROT(c, 11);                                              \
		b ^= a; b -= HERALD_ROT(a, 25);                                              \
		c ^= b; c -= HERALD_ROT(b, 16);                                              \
		a ^= c; a -= HERALD_ROT(c, 4);                                               \
		b ^= a; b -= HERALD_ROT(a, 14);                                              \
		c ^= b; c -= HERALD_ROT(b, 24);                                              \
	} while (0)

static inline __u32 herald_flow_hash(const __u32 w[10])
{
	__u32 a, b, c;

	a = b = c = 0xdeadbeefU + (10U << 2) + HERALD_HASH_SEED;
	a += w[0]; b += w[1]; c += w[2];
	HERALD_MIX(a, b, c);
	a += w[3]; b += w[4]; c += w[5];
	HERALD_MIX(a, b, c);
	a += w[6]; b += w[7]; c += w[8];
	HERALD_MIX(a, b, c);
	a += w[9];
	HERALD_FINAL(a, b, c);
	return c;
}

/*
 * The flow cache slot of a flow key (its 10 host-order words): a cheap multiplicative mix, not
 * the flow hash, because a cached packet has not computed that. User space mirrors this
 * (herald-ebpf `hash::flow_cache_slot`).
 */
static inline __u32 herald_flow_cache_slot(const __u32 w[10])
{
	__u32 s = w[0] ^ w[1] ^ w[2] ^ w[3];
	__u32 d = w[4] ^ w[5] ^ w[6] ^ w[7];
	__u32 x = (s * 0x9e3779b1U) ^ d ^ (w[8] * 0x85ebca6bU) ^ w[9];

	x *= 0xc2b2ae35U;
	return (x ^ (x >> 16)) & (HERALD_FLOW_CACHE_SLOTS - 1);
}

/*
 * The VIP address filter: bit herald_vip_filter_bit(addr) of herald_vip_bits is set for every
 * VIP address, so most non-VIP packets pass after one array read instead of two hash
 * lookups. The 16-byte address field is read as four host-order words and folded to 16 bits.
 * User space mirrors this (herald-ebpf `hash::vip_filter_bit`).
 */
static inline __u32 herald_vip_filter_bit(const __u32 a[4])
{
	__u32 x = a[0] ^ a[1] ^ a[2] ^ a[3];

	x ^= x >> 16;
	return x & 0xffff;
}

#endif /* HERALD_H */

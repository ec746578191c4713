/* SPDX-License-Identifier: Apache-2.0 */
/*
 * herald_xdp: the VIP fast path on the uplink (DESIGN §6).
 *
 *   parse -> VIP address filter -> flow cache, then flow table (a hit names VIP and backend;
 *            SYNs skip both; a table hit is cached; a flow's second packet stores it in the table)
 *         -> on a miss: VIP lookup (port, then port 0) -> Maglev table -> cached as pending
 *         -> backend -> IPIP / IP6IP6 encapsulation, next hop from bpf_fib_lookup -> XDP_TX / redirect
 *
 * Everything that is not a VIP packet this program understands returns XDP_PASS untouched.
 * A VIP packet is forwarded, passed up (local backend), answered with an ICMP too-big, or
 * dropped with a counted reason: every path ends in an explicit verdict.
 *
 * Built twice by build.rs: normally, and with -DHERALD_BENCH, where a forwarded packet is
 * restored to its original bytes before returning so BPF_PROG_TEST_RUN repeats see the same
 * input each time, and an empty program is added as the benchmark anchor.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "herald.h"
#include "maps.h"
#include "parse.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

#define HERALD_TTL 64

/*
 * Where the program stops early in the bench build's cost-breakdown variants
 * (herald_xdp_s1..s7): each one does the work of the previous stage and one more step, then
 * returns, so the differences between them say what each step costs. The forwarding program
 * is built with HERALD_STOP_NONE only; the compiler removes every check below.
 */
#define HERALD_STOP_NONE 0
#define HERALD_STOP_PARSE 1    /* after parsing to the flow key */
#define HERALD_STOP_FILTER 2   /* after the VIP address filter */
#define HERALD_STOP_VIP 3      /* after the flow cache/table (or VIP) lookup, VIP counters */
#define HERALD_STOP_FLOW 4     /* after hash, Maglev table and caching (no stored flow) */
#define HERALD_STOP_BACKEND 5  /* after the backend and its per-CPU entry */
#define HERALD_STOP_NEXTHOP 6  /* after the outer source and the next-hop cache check */
#define HERALD_STOP_HEADROOM 7 /* after growing and shrinking the frame, no header writes */
/*
 * Not a stop: the whole program, with every flow-cache hit treated as pending, so each repeat
 * of one packet costs what a flow's second packet costs (the table insert).
 */
#define HERALD_BENCH_SECOND 8

char LICENSE[] SEC("license") = "GPL";

static __always_inline void count_drop(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&herald_drops, &reason);

	if (c)
		*c += 1;
}

static __always_inline void count_event(__u32 event)
{
	__u64 *c = bpf_map_lookup_elem(&herald_events, &event);

	if (c)
		*c += 1;
}

static __always_inline int drop(__u32 reason)
{
	count_drop(reason);
	return XDP_DROP;
}

static __always_inline __u16 csum_fold(__u64 sum)
{
#pragma unroll
	for (int i = 0; i < 4; i++)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* Checksum of an IPv4 header without options; its check field must be 0. */
static __always_inline __u16 ipv4_csum(struct iphdr *iph)
{
	__u16 *w = (__u16 *)iph;
	__u64 sum = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*iph) / 2); i++)
		sum += w[i];
	return csum_fold(sum);
}

/*
 * The kernel's struct bpf_map, only the field read here: the verifier lets a program read a
 * map's fields (Linux 5.10+), and CO-RE gives the field's offset in the running kernel.
 */
struct bpf_map {
	__u32 max_entries;
} __attribute__((preserve_access_index));

static __always_inline __u32 hash_key(const struct herald_flow_key *key)
{
	return herald_flow_hash((const __u32 *)key);
}

/* Finds the VIP: exact port first, then the all-ports entry (port 0). */
static __always_inline struct herald_vip *lookup_vip(const struct herald_flow_key *key)
{
	struct herald_vip_key vk = {};
	struct herald_vip *vip;

	__builtin_memcpy(vk.addr, key->dst, 16);
	vk.port = key->dport;
	vk.proto = key->proto;
	vk.family = key->family;
	vip = bpf_map_lookup_elem(&herald_vips, &vk);
	if (vip)
		return vip;
	vk.port = 0;
	return bpf_map_lookup_elem(&herald_vips, &vk);
}

/* True when this CPU has seen more new flows in the current second than configured. */
static __always_inline int flooded(const struct herald_config *cfg)
{
	__u32 zero = 0;
	struct herald_flood *f;
	__u64 now;

	if (!cfg || !cfg->max_new_flows)
		return 0;
	f = bpf_map_lookup_elem(&herald_flood, &zero);
	if (!f)
		return 0;
	now = bpf_ktime_get_ns();
	if (now - f->window_start_ns > 1000000000ULL) {
		f->window_start_ns = now;
		f->count = 0;
	}
	f->count += 1;
	return f->count > cfg->max_new_flows;
}

/*
 * This CPU's flow table (NULL only if user space has not created it: flows then go by the
 * Maglev table alone). bpf_get_smp_processor_id and the array-of-maps lookup are both inlined
 * by the verifier: no helper call.
 */
static __always_inline void *flow_table(void)
{
	__u32 cpu = bpf_get_smp_processor_id() % HERALD_MAX_CPUS;

	return bpf_map_lookup_elem(&herald_flows, &cpu);
}

/*
 * The stored flow of an ICMP error in any CPU's table: the NIC hashes an ICMP error by its
 * outer addresses (router -> VIP), so it rarely arrives on the CPU that stored the flow it
 * quotes. ICMP errors are rare; this CPU's table is tried first. A bounded loop (Linux 5.3+)
 * rather than bpf_loop (5.17+); user space fills the slots from 0 without gaps, so the first
 * empty one ends the search.
 */
static __always_inline struct herald_flow *lookup_flow_any_cpu(const struct herald_flow_key *key,
								 void *table)
{
	struct herald_flow *flow;

	if (table) {
		flow = bpf_map_lookup_elem(table, key);
		if (flow)
			return flow;
	}
	for (__u32 i = 0; i < HERALD_MAX_CPUS; i++) {
		__u32 index = i;
		void *t = bpf_map_lookup_elem(&herald_flows, &index);

		if (!t)
			break;
		flow = bpf_map_lookup_elem(t, key);
		if (flow)
			return flow;
	}
	return NULL;
}

/* True when a cached flow's key is the packet's: five 64-bit compares. */
static __always_inline int same_key(const struct herald_flow_key *a,
				    const struct herald_flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return !((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4]));
}

/*
 * Stores a flow in this CPU's flow table, unless new flows come faster than configured;
 * returns 0 once stored.
 */
static __always_inline int store_flow(void *table, const struct herald_flow_key *key,
				      const struct herald_flow *flow, const struct herald_config *cfg)
{
	if (!table)
		return -1;
	if (flooded(cfg)) {
		count_event(HERALD_EV_FLOW_SKIPPED);
		return -1;
	}
	return bpf_map_update_elem(table, key, flow, BPF_ANY) ? -1 : 0;
}

/*
 * The stored flow of a packet that is not a SYN, if it was stored for the VIP that still has
 * its id (same generation) and its backend still exists; NULL otherwise. A hit makes the VIP
 * lookup unnecessary: the flow names its VIP. *be_out is the flow's backend on a hit.
 *
 * This CPU's cache slot `slot` first; then the flow table, whose hit is cached. A pending
 * cached flow (seen once) enters the flow table now, with its second packet.
 */
static __always_inline struct herald_flow *lookup_flow(struct packet *pkt, void *table,
						       struct herald_flow_cached *slot,
						       const struct herald_config *cfg,
						       struct herald_backend **be_out, const int stop)
{
	struct herald_backend *be;
	struct herald_flow *flow;
	int cached = 0;
	__u32 *gen;

	/* A SYN starts a new connection: it always takes the table's current choice. */
	if ((pkt->tcp_flags & (HERALD_TCP_SYN | HERALD_TCP_ACK)) == HERALD_TCP_SYN)
		return NULL;
	if (slot && same_key(&slot->key, &pkt->key)) {
		flow = &slot->flow;
		cached = 1;
	} else if (pkt->icmp_error) {
		flow = lookup_flow_any_cpu(&pkt->key, table);
	} else {
		flow = table ? bpf_map_lookup_elem(table, &pkt->key) : NULL;
	}
	if (!flow)
		return NULL;
	gen = bpf_map_lookup_elem(&herald_vip_gen, &flow->vip);
	if (!gen || *gen != flow->vip_gen)
		return NULL;
	be = bpf_map_lookup_elem(&herald_backends, &flow->backend);
	if (!be || !be->family)
		return NULL;
	*be_out = be;
	/* ICMP errors follow flows but never create or move them. */
	if (pkt->icmp_error || !slot)
		return flow;
	if (!cached) {
		__builtin_memcpy(&slot->key, &pkt->key, sizeof(slot->key));
		slot->flow = *flow;
		slot->pending = 0;
		return &slot->flow;
	}
	/* Not stored (over the new-flow rate): it stays pending, the next packet tries again. */
	if ((slot->pending || stop == HERALD_BENCH_SECOND) && !store_flow(table, &pkt->key, flow, cfg))
		slot->pending = 0;
	return flow;
}

/*
 * Picks the backend id of a packet without a (usable) stored flow from its VIP's Maglev table,
 * gives the flow hash, and caches the flow as pending (or, without a cache slot, stores it);
 * returns -1 when the VIP has no usable table.
 */
static __always_inline int pick_backend(struct packet *pkt, struct herald_vip *vip,
					const struct herald_config *cfg, void *flows,
					struct herald_flow_cached *slot, __u32 *backend_id,
					__u32 *hash_out)
{
	__u32 m, index, *id, hash;
	void *table;

	hash = hash_key(&pkt->key);
	*hash_out = hash;
	table = bpf_map_lookup_elem(&herald_maglev, &vip->id);
	if (!table)
		return -1;
	/*
	 * M from the table map itself (M + 1 entries) rather than from its entry 0: one helper
	 * call less (an inner map of varying size cannot have its lookups inlined).
	 */
	m = ((const struct bpf_map *)table)->max_entries - 1;
	if (m == 0 || m > HERALD_MAGLEV_MAX_SIZE)
		return -1;
	index = 1 + hash % m;
	id = bpf_map_lookup_elem(table, &index);
	if (!id)
		return -1;
	*backend_id = *id;

	/* ICMP errors follow flows but never create them. */
	if (pkt->icmp_error)
		return 0;
	struct herald_flow fv = {
		.backend = *id,
		.vip = vip->id,
		.hash = hash,
		.vip_gen = vip->generation,
	};
	/*
	 * A SYN for a tuple the table still has (a port reused soon after its connection closed)
	 * leaves that entry until the second packet replaces it; a flow that loses its pending
	 * slot to another one before then takes the entry's backend.
	 */
	if (slot) {
		__builtin_memcpy(&slot->key, &pkt->key, sizeof(slot->key));
		slot->flow = fv;
		slot->pending = 1;
	} else {
		store_flow(flows, &pkt->key, &fv, cfg);
	}
	return 0;
}

/*
 * Answers an oversized VIP packet with ICMP fragmentation-needed (IPv4, RFC 792/1191) or
 * packet-too-big (IPv6, RFC 4443 §3.2) carrying `mtu` (the path MTU minus the encapsulation)
 * and sends it back where it came from. The frame keeps its Ethernet/VLAN header with the
 * MAC addresses swapped.
 */
static __always_inline int send_too_big(struct xdp_md *ctx, struct packet *pkt, __u32 mtu)
{
	__u32 hdr = pkt->key.family == HERALD_FAMILY_V4 ? sizeof(struct iphdr) + 8
							 : sizeof(struct ipv6hdr) + 8;
	__u32 quote = pkt->key.family == HERALD_FAMILY_V4 ? HERALD_ICMP4_QUOTE : HERALD_ICMP6_QUOTE;
	__u32 l3 = pkt->l3_off;
	__u8 l2[18];
	void *data, *data_end;
	__u32 old_len;

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + 18 > data_end)
		return drop(HERALD_DROP_HEADROOM);
	__builtin_memcpy(l2, data, 18);
	old_len = data_end - data;
	if (old_len < l3 + quote)
		return drop(HERALD_DROP_TOO_BIG);
	/* Keep L2 + IP header(s) + quote; the rest goes. */
	if (bpf_xdp_adjust_tail(ctx, (int)(l3 + quote) - (int)old_len))
		return drop(HERALD_DROP_HEADROOM);
	if (bpf_xdp_adjust_head(ctx, -(int)hdr))
		return drop(HERALD_DROP_HEADROOM);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return drop(HERALD_DROP_HEADROOM);
	__builtin_memcpy(eth->h_dest, l2 + 6, 6);
	__builtin_memcpy(eth->h_source, l2, 6);
	eth->h_proto = *(__be16 *)(l2 + 12);
	if (l3 == 18) {
		if (data + 18 > data_end)
			return drop(HERALD_DROP_HEADROOM);
		__builtin_memcpy(data + 14, l2 + 14, 4);
	}

	if (pkt->key.family == HERALD_FAMILY_V4) {
		struct iphdr *iph = data + (l3 == 18 ? 18 : 14);
		struct icmphdr *ih = (void *)(iph + 1);
		void *end = (void *)(ih + 1) + HERALD_ICMP4_QUOTE;

		if (end > data_end)
			return drop(HERALD_DROP_HEADROOM);
		iph->version = 4;
		iph->ihl = 5;
		iph->tos = 0;
		iph->tot_len = bpf_htons(sizeof(*iph) + sizeof(*ih) + HERALD_ICMP4_QUOTE);
		iph->id = 0;
		iph->frag_off = 0;
		iph->ttl = HERALD_TTL;
		iph->protocol = IPPROTO_ICMP;
		iph->check = 0;
		__builtin_memcpy(&iph->saddr, pkt->key.dst, 4);
		__builtin_memcpy(&iph->daddr, pkt->key.src, 4);
		iph->check = ipv4_csum(iph);
		ih->type = ICMP_DEST_UNREACH;
		ih->code = ICMP_FRAG_NEEDED;
		ih->checksum = 0;
		ih->un.frag.__unused = 0;
		ih->un.frag.mtu = bpf_htons(mtu);
		__s64 sum = bpf_csum_diff(0, 0, (__be32 *)ih, sizeof(*ih) + HERALD_ICMP4_QUOTE, 0);
		if (sum < 0)
			return drop(HERALD_DROP_HEADROOM);
		ih->checksum = csum_fold(sum);
	} else {
		struct ipv6hdr *ip6h = data + (l3 == 18 ? 18 : 14);
		struct icmp6hdr *ih = (void *)(ip6h + 1);
		void *end = (void *)(ih + 1) + HERALD_ICMP6_QUOTE;
		struct {
			__u8 src[16];
			__u8 dst[16];
			__be32 len;
			__be32 next;
		} pseudo = {};

		if (end > data_end)
			return drop(HERALD_DROP_HEADROOM);
		__builtin_memset(ip6h, 0, sizeof(*ip6h));
		ip6h->version = 6;
		ip6h->payload_len = bpf_htons(sizeof(*ih) + HERALD_ICMP6_QUOTE);
		ip6h->nexthdr = IPPROTO_ICMPV6;
		ip6h->hop_limit = HERALD_TTL;
		__builtin_memcpy(&ip6h->saddr, pkt->key.dst, 16);
		__builtin_memcpy(&ip6h->daddr, pkt->key.src, 16);
		ih->icmp6_type = ICMPV6_PKT_TOOBIG;
		ih->icmp6_code = 0;
		ih->icmp6_cksum = 0;
		ih->icmp6_mtu = bpf_htonl(mtu);
		__builtin_memcpy(pseudo.src, pkt->key.dst, 16);
		__builtin_memcpy(pseudo.dst, pkt->key.src, 16);
		pseudo.len = bpf_htonl(sizeof(*ih) + HERALD_ICMP6_QUOTE);
		pseudo.next = bpf_htonl(IPPROTO_ICMPV6);
		__s64 sum = bpf_csum_diff(0, 0, (__be32 *)&pseudo, sizeof(pseudo), 0);
		if (sum < 0)
			return drop(HERALD_DROP_HEADROOM);
		sum = bpf_csum_diff(0, 0, (__be32 *)ih, sizeof(*ih) + HERALD_ICMP6_QUOTE, sum);
		if (sum < 0)
			return drop(HERALD_DROP_HEADROOM);
		ih->icmp6_cksum = csum_fold(sum);
	}
	count_event(HERALD_EV_ICMP_TOO_BIG);
	return XDP_TX;
}

/*
 * Asks bpf_fib_lookup for the next hop towards `be` and caches the answer in `nh`. Returns
 * -1 when the packet may go on, or the verdict to return (drop, ICMP too-big answer).
 */
static __always_inline int refresh_nexthop(struct xdp_md *ctx, struct packet *pkt,
					   struct herald_backend *be, struct herald_backend_stats *nh,
					   const __u32 *src, __u32 hash, __u64 now)
{
	struct bpf_fib_lookup fib = {};
	__u32 outer = pkt->key.family == HERALD_FAMILY_V4 ? sizeof(struct iphdr)
							   : sizeof(struct ipv6hdr);
	int rc;

	fib.ifindex = ctx->ingress_ifindex;
	fib.tot_len = pkt->ip_len + outer;
	if (pkt->key.family == HERALD_FAMILY_V4) {
		fib.family = AF_INET;
		fib.tos = pkt->tos;
		fib.l4_protocol = IPPROTO_IPIP;
		fib.ipv4_src = src[0];
		__builtin_memcpy(&fib.ipv4_dst, be->addr, 4);
	} else {
		fib.family = AF_INET6;
		fib.flowinfo = bpf_htonl(hash & 0xfffff);
		fib.l4_protocol = IPPROTO_IPV6;
		__builtin_memcpy(fib.ipv6_src, src, 16);
		__builtin_memcpy(fib.ipv6_dst, be->addr, 16);
	}
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
		__u32 mtu = fib.mtu_result > outer ? fib.mtu_result - outer : 0;

		if (pkt->icmp_error || mtu < 68)
			return drop(HERALD_DROP_TOO_BIG);
		return send_too_big(ctx, pkt, mtu);
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return drop(HERALD_DROP_NO_NEIGH);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return drop(HERALD_DROP_FIB);
	/* A fresh entry, or a longer packet checked against the same route. */
	if (nh->nh_expires < now || nh->nh_iif != ctx->ingress_ifindex ||
	    nh->nh_generation != be->generation || nh->nh_ifindex != fib.ifindex) {
		nh->nh_ok_len = 0;
		nh->nh_expires = now + HERALD_NEXTHOP_TTL_JIFFIES;
	}
	__builtin_memcpy(nh->nh_dmac, fib.dmac, ETH_ALEN);
	__builtin_memcpy(nh->nh_smac, fib.smac, ETH_ALEN);
	nh->nh_ifindex = fib.ifindex;
	nh->nh_generation = be->generation;
	nh->nh_iif = ctx->ingress_ifindex;
	if (pkt->ip_len + outer > nh->nh_ok_len)
		nh->nh_ok_len = pkt->ip_len + outer;
	return -1;
}

/*
 * Encapsulates the IP packet at pkt->l3_off for `be` and sends it towards the next hop.
 * The outer frame has no VLAN tag: it leaves by whatever interface the route says.
 */
static __always_inline int encap_and_send(struct xdp_md *ctx, struct packet *pkt,
					  struct herald_backend *be, struct herald_backend_stats *nh,
					  __u32 hash, const struct herald_config *cfg, const int stop)
{
	__u32 outer = pkt->key.family == HERALD_FAMILY_V4 ? sizeof(struct iphdr)
							   : sizeof(struct ipv6hdr);
	int delta = (int)outer + (int)sizeof(struct ethhdr) - (int)pkt->l3_off;
	__u32 src[4] = {};
	void *data, *data_end;
	__u64 now;
	int rc;

	/* Outer source: the configured prefix with the flow hash in its low bits. */
	if (pkt->key.family == HERALD_FAMILY_V4) {
		if (cfg)
			__builtin_memcpy(src, cfg->encap_src4, 4);
		((__u8 *)src)[2] = hash >> 8;
		((__u8 *)src)[3] = hash;
	} else {
		if (cfg)
			__builtin_memcpy(src, cfg->encap_src6, 16);
		src[3] = bpf_htonl(hash);
	}

	/* jiffies: the verifier inlines this helper into one load, where a clock helper is a call. */
	now = bpf_jiffies64();
	if (nh->nh_expires < now || nh->nh_iif != ctx->ingress_ifindex ||
	    nh->nh_generation != be->generation || pkt->ip_len + outer > nh->nh_ok_len) {
		rc = refresh_nexthop(ctx, pkt, be, nh, src, hash, now);
		if (rc >= 0)
			return rc;
	}
	if (stop == HERALD_STOP_NEXTHOP)
		return XDP_PASS;

#ifdef HERALD_BENCH
	__u8 saved[18];
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + 18 > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(saved, data, 18);
#endif

	if (bpf_xdp_adjust_head(ctx, -delta))
		return drop(HERALD_DROP_HEADROOM);
	if (stop == HERALD_STOP_HEADROOM) {
		rc = XDP_PASS;
		goto restore;
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return drop(HERALD_DROP_HEADROOM);
	__builtin_memcpy(eth->h_dest, nh->nh_dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, nh->nh_smac, ETH_ALEN);

	if (pkt->key.family == HERALD_FAMILY_V4) {
		struct iphdr *iph = (void *)(eth + 1);
		__be16 tot_len = bpf_htons(pkt->ip_len + sizeof(*iph));
		__u32 daddr;

		if ((void *)(iph + 1) > data_end)
			return drop(HERALD_DROP_HEADROOM);
		eth->h_proto = bpf_htons(ETH_P_IP);
		iph->version = 4;
		iph->ihl = 5;
		iph->tos = pkt->tos;
		iph->tot_len = tot_len;
		iph->id = 0;
		iph->frag_off = bpf_htons(0x4000); /* DF: the inner packet was checked against the MTU */
		iph->ttl = HERALD_TTL;
		iph->protocol = IPPROTO_IPIP;
		iph->saddr = src[0];
		/* The tunnel goes to the backend (bpf_fib_lookup's dst became the next hop). */
		__builtin_memcpy(&daddr, be->addr, 4);
		iph->daddr = daddr;
		/*
		 * The checksum from the values just written rather than read back from the frame
		 * (RFC 1071: 16-bit words in any byte order, 32-bit words folded later). Constant
		 * words: version/IHL, DF, TTL/protocol; id and checksum are 0.
		 */
		iph->check = csum_fold((__u64)bpf_htons(0x4500 | pkt->tos) + tot_len +
				       bpf_htons(0x4000) + bpf_htons((HERALD_TTL << 8) | IPPROTO_IPIP) +
				       src[0] + daddr);
	} else {
		struct ipv6hdr *ip6h = (void *)(eth + 1);
		__u32 vtc = (6U << 28) | ((__u32)pkt->tos << 20) | (hash & 0xfffff);

		if ((void *)(ip6h + 1) > data_end)
			return drop(HERALD_DROP_HEADROOM);
		eth->h_proto = bpf_htons(ETH_P_IPV6);
		*(__be32 *)ip6h = bpf_htonl(vtc);
		ip6h->payload_len = bpf_htons(pkt->ip_len);
		ip6h->nexthdr = IPPROTO_IPV6;
		ip6h->hop_limit = HERALD_TTL;
		__builtin_memcpy(&ip6h->saddr, src, 16);
		__builtin_memcpy(&ip6h->daddr, be->addr, 16);
	}

	rc = nh->nh_ifindex == ctx->ingress_ifindex ? XDP_TX : bpf_redirect(nh->nh_ifindex, 0);

restore:
#ifdef HERALD_BENCH
	if (bpf_xdp_adjust_head(ctx, delta))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + 18 > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, saved, 18);
#endif
	return rc;
}

static __always_inline int herald_xdp_main(struct xdp_md *ctx, const int stop)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct packet pkt = {};
	struct herald_backend *be = NULL;
	struct herald_config *cfg;
	struct herald_backend_stats *bs;
	struct herald_vip_stats *vs;
	struct herald_vip *vip = NULL;
	struct herald_flow *flow;
	__u32 zero = 0, backend_id, hash, vip_id, bit, word, slot_index;
	struct herald_flow_cached *slot;
	void *flows;
	__u64 *bits;
	__u64 bytes = data_end - data;

	if (parse_packet(data, data_end, &pkt))
		return XDP_PASS;
	if (stop == HERALD_STOP_PARSE)
		return XDP_PASS;
	bit = herald_vip_filter_bit((const __u32 *)pkt.key.dst);
	word = bit >> 6;
	bits = bpf_map_lookup_elem(&herald_vip_bits, &word);
	if (!bits || !(*bits & (1ULL << (bit & 63))))
		return XDP_PASS;
	if (stop == HERALD_STOP_FILTER)
		return XDP_PASS;
	/* A stored flow first: it names its VIP and backend, so a hit needs no VIP lookup. */
	flows = flow_table();
	slot_index = herald_flow_cache_slot((const __u32 *)&pkt.key);
	slot = bpf_map_lookup_elem(&herald_fcache, &slot_index);
	cfg = bpf_map_lookup_elem(&herald_config, &zero);
	flow = lookup_flow(&pkt, flows, slot, cfg, &be, stop);
	if (flow) {
		vip_id = flow->vip;
		backend_id = flow->backend;
		hash = flow->hash;
	} else {
		vip = lookup_vip(&pkt.key);
		if (!vip)
			return XDP_PASS;
		vip_id = vip->id;
	}
	vs = bpf_map_lookup_elem(&herald_vip_stat, &vip_id);
	if (vs) {
		vs->packets += 1;
		vs->bytes += bytes;
		if (flow)
			vs->lru_hit += 1;
		else
			vs->lru_miss += 1;
	}
	if (stop == HERALD_STOP_VIP)
		return XDP_PASS;

	if (!flow && (!vip || pick_backend(&pkt, vip, cfg, flows, slot, &backend_id, &hash)))
		return drop(HERALD_DROP_NO_BACKEND);
	if (stop == HERALD_STOP_FLOW)
		return XDP_PASS;
	/* A flow-table hit has looked its backend up already (lookup_flow). */
	if (!flow)
		be = bpf_map_lookup_elem(&herald_backends, &backend_id);
	if (!be || !be->family)
		return drop(HERALD_DROP_NO_BACKEND);
	if (be->family != pkt.key.family)
		return drop(HERALD_DROP_FAMILY);
	bs = bpf_map_lookup_elem(&herald_be_stats, &backend_id);
	if (!bs)
		return drop(HERALD_DROP_NO_BACKEND);
	bs->packets += 1;
	bs->bytes += bytes;
	if (stop == HERALD_STOP_BACKEND)
		return XDP_PASS;
	if (pkt.icmp_error)
		count_event(HERALD_EV_ICMP_FOLLOWED);
	if (be->flags & HERALD_BACKEND_LOCAL) {
		count_event(HERALD_EV_LOCAL);
		return XDP_PASS;
	}
	return encap_and_send(ctx, &pkt, be, bs, hash, cfg, stop);
}

SEC("xdp")
int herald_xdp(struct xdp_md *ctx)
{
	return herald_xdp_main(ctx, HERALD_STOP_NONE);
}

#ifdef HERALD_BENCH
/* The cost-breakdown variants (see HERALD_STOP_*). */
#define HERALD_STAGE(n)                                                                      \
	SEC("xdp") int herald_xdp_s##n(struct xdp_md *ctx) { return herald_xdp_main(ctx, n); }
HERALD_STAGE(1)
HERALD_STAGE(2)
HERALD_STAGE(3)
HERALD_STAGE(4)
HERALD_STAGE(5)
HERALD_STAGE(6)
HERALD_STAGE(7)
SEC("xdp") int herald_xdp_second(struct xdp_md *ctx)
{
	return herald_xdp_main(ctx, HERALD_BENCH_SECOND);
}

/*
 * Floors: one operation of the fast path alone, on a key read from fixed offsets of an
 * untagged IPv4/TCP frame, to show what the remaining steps cannot go below. The *_cpu
 * flow-table floors use the real per-CPU tables of herald_flows (the map-of-maps lookup
 * included; an update stores generation 0, which no VIP has, so the program never trusts it).
 * The others use maps of their own: herald_floor_fl and _fl4 are shaped like the single table
 * Herald had before the per-CPU tables (one LRU_HASH of HERALD_MAX_FLOWS entries with
 * BPF_F_NO_COMMON_LRU; 40-byte key and a 16-byte IPv4-only key), herald_floor_fc is the same
 * table with the common LRU, for comparison.
 */
struct herald_flow_key4 {
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HERALD_MAX_FLOWS);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct herald_flow_key);
	__type(value, struct herald_flow);
} herald_floor_fl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HERALD_MAX_FLOWS);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct herald_flow_key4);
	__type(value, struct herald_flow);
} herald_floor_fl4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HERALD_MAX_FLOWS);
	__type(key, struct herald_flow_key);
	__type(value, struct herald_flow);
} herald_floor_fc SEC(".maps");

#define HERALD_FLOOR_LOOKUP 1
#define HERALD_FLOOR_UPDATE 2
#define HERALD_FLOOR_LOOKUP4 3
#define HERALD_FLOOR_UPDATE4 4
#define HERALD_FLOOR_VIP 5
#define HERALD_FLOOR_HEADROOM 6
#define HERALD_FLOOR_KTIME 7
#define HERALD_FLOOR_JIFFIES 8
#define HERALD_FLOOR_LOOKUP_CPU 9
#define HERALD_FLOOR_UPDATE_CPU 10
#define HERALD_FLOOR_UPDATE_COMMON 11

static __always_inline int herald_floor(struct xdp_md *ctx, const int what)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct herald_flow fv = { .backend = 1, .vip = 0 };
	struct herald_flow_key key = {};
	struct herald_flow_key4 key4 = {};
	struct herald_vip_key vk = {};
	__u8 saved[18];

	if (data + 14 + 20 + 4 > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(&key4.src, data + 26, 4);
	__builtin_memcpy(&key4.dst, data + 30, 4);
	__builtin_memcpy(&key4.sport, data + 34, 4);
	key4.proto = IPPROTO_TCP;
	key4.family = HERALD_FAMILY_V4;
	__builtin_memcpy(key.src, &key4.src, 4);
	__builtin_memcpy(key.dst, &key4.dst, 4);
	key.sport = key4.sport;
	key.dport = key4.dport;
	key.proto = IPPROTO_TCP;
	key.family = HERALD_FAMILY_V4;
	switch (what) {
	case HERALD_FLOOR_LOOKUP:
		return bpf_map_lookup_elem(&herald_floor_fl, &key) ? XDP_PASS : XDP_ABORTED;
	case HERALD_FLOOR_UPDATE:
		return bpf_map_update_elem(&herald_floor_fl, &key, &fv, BPF_ANY) ? XDP_ABORTED
										   : XDP_PASS;
	case HERALD_FLOOR_UPDATE_COMMON:
		return bpf_map_update_elem(&herald_floor_fc, &key, &fv, BPF_ANY) ? XDP_ABORTED
										   : XDP_PASS;
	case HERALD_FLOOR_LOOKUP_CPU:
	case HERALD_FLOOR_UPDATE_CPU: {
		void *table = flow_table();

		if (!table)
			return XDP_ABORTED;
		if (what == HERALD_FLOOR_UPDATE_CPU)
			return bpf_map_update_elem(table, &key, &fv, BPF_ANY) ? XDP_ABORTED : XDP_PASS;
		return bpf_map_lookup_elem(table, &key) ? XDP_PASS : XDP_ABORTED;
	}
	case HERALD_FLOOR_LOOKUP4:
		return bpf_map_lookup_elem(&herald_floor_fl4, &key4) ? XDP_PASS : XDP_ABORTED;
	case HERALD_FLOOR_UPDATE4:
		return bpf_map_update_elem(&herald_floor_fl4, &key4, &fv, BPF_ANY) ? XDP_ABORTED
										     : XDP_PASS;
	case HERALD_FLOOR_VIP:
		__builtin_memcpy(vk.addr, &key4.dst, 4);
		vk.port = key4.dport;
		vk.proto = IPPROTO_TCP;
		vk.family = HERALD_FAMILY_V4;
		return bpf_map_lookup_elem(&herald_vips, &vk) ? XDP_PASS : XDP_ABORTED;
	case HERALD_FLOOR_HEADROOM:
		__builtin_memcpy(saved, data, 18);
		if (bpf_xdp_adjust_head(ctx, -20))
			return XDP_ABORTED;
		if (bpf_xdp_adjust_head(ctx, 20))
			return XDP_ABORTED;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		if (data + 18 > data_end)
			return XDP_ABORTED;
		__builtin_memcpy(data, saved, 18);
		return XDP_PASS;
	case HERALD_FLOOR_KTIME:
		return bpf_ktime_get_coarse_ns() ? XDP_PASS : XDP_ABORTED;
	case HERALD_FLOOR_JIFFIES:
		return bpf_jiffies64() ? XDP_PASS : XDP_ABORTED;
	}
	return XDP_ABORTED;
}

#define HERALD_FLOOR(name, what)                                                             \
	SEC("xdp") int herald_floor_##name(struct xdp_md *ctx) { return herald_floor(ctx, what); }
HERALD_FLOOR(lookup, HERALD_FLOOR_LOOKUP)
HERALD_FLOOR(update, HERALD_FLOOR_UPDATE)
HERALD_FLOOR(lookup4, HERALD_FLOOR_LOOKUP4)
HERALD_FLOOR(update4, HERALD_FLOOR_UPDATE4)
HERALD_FLOOR(lookup_cpu, HERALD_FLOOR_LOOKUP_CPU)
HERALD_FLOOR(update_cpu, HERALD_FLOOR_UPDATE_CPU)
HERALD_FLOOR(update_common, HERALD_FLOOR_UPDATE_COMMON)
HERALD_FLOOR(vip, HERALD_FLOOR_VIP)
HERALD_FLOOR(headroom, HERALD_FLOOR_HEADROOM)
HERALD_FLOOR(ktime, HERALD_FLOOR_KTIME)
HERALD_FLOOR(jiffies, HERALD_FLOOR_JIFFIES)

/* The benchmark anchor: the cheapest possible XDP program. */
SEC("xdp")
int herald_xdp_nop(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/*
 * Packet generator for the pps benchmark (BPF_PROG_RUN live frames): rewrites the frame from
 * the template and sends it out. Live-frame mode recycles pages without restoring their
 * bytes, and whoever handled a frame before (TTL decrement, NAT) changed them.
 */
#define HERALD_GEN_LEN 64
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[HERALD_GEN_LEN]);
} herald_gen_tmpl SEC(".maps");

SEC("xdp")
int herald_xdp_tx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	__u8 *tmpl = bpf_map_lookup_elem(&herald_gen_tmpl, &zero);

	if (!tmpl || data + HERALD_GEN_LEN > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, tmpl, HERALD_GEN_LEN);
	return XDP_TX;
}

/* Packet sink for the pps benchmark: counts and drops. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} herald_gen_sink SEC(".maps");

SEC("xdp")
int herald_xdp_sink(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&herald_gen_sink, &zero);

	if (n)
		*n += 1;
	return XDP_DROP;
}
#endif

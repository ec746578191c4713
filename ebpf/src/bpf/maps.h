/* SPDX-License-Identifier: Apache-2.0 */
/* The maps of the XDP balancer, one purpose comment each. Layouts are in herald.h. */
#ifndef HERALD_MAPS_H
#define HERALD_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "herald.h"

/* (address, port, protocol) -> VIP id. Written by user space when VIPs change. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HERALD_MAX_VIPS);
	__type(key, struct herald_vip_key);
	__type(value, struct herald_vip);
} herald_vips SEC(".maps");

/*
 * One bit per VIP address hash (herald_vip_filter_bit): a clear bit means "no VIP here", so
 * the packet passes without a hash lookup. User space sets a bit before adding a VIP and
 * clears it after removing the last VIP on it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HERALD_VIP_FILTER_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} herald_vip_bits SEC(".maps");

/*
 * VIP id -> generation (herald_vip.generation, herald_flow.vip_gen). User space sets a new
 * value before adding a VIP under an id and after removing it, never 0.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HERALD_MAX_VIPS);
	__type(key, __u32);
	__type(value, __u32);
} herald_vip_gen SEC(".maps");

/* Backend id -> backend host. Ids are stable while a backend exists, so flows keep them. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HERALD_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct herald_backend);
} herald_backends SEC(".maps");

/*
 * The Maglev table of one VIP: entry 0 holds the table size M, entries 1..M the backend ids.
 * BPF_F_INNER_MAP lets tables of different sizes sit in the same outer map.
 */
struct herald_maglev_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HERALD_MAGLEV_DEFAULT_SIZE + 1);
	__uint(map_flags, BPF_F_INNER_MAP);
	__type(key, __u32);
	__type(value, __u32);
};

/*
 * VIP id -> its Maglev table. User space builds a new table map and swaps it in with one
 * update, so the program never sees a half-written table.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, HERALD_MAX_VIPS);
	__type(key, __u32);
	__array(values, struct herald_maglev_table);
} herald_maglev SEC(".maps");

/*
 * One flow table: 5-tuple -> backend, so a flow stays on its backend when the table changes.
 * This is the prototype the verifier checks herald_flows' values against; user space creates
 * the real tables, sized HERALD_MAX_FLOWS / tables (the size of an inner hash map is not part
 * of the prototype, so one entry is enough here). No BPF_F_NO_COMMON_LRU: a table is used by
 * one CPU, so the common LRU's lock is uncontended and its insert is cheaper (docs/benchmarks.md).
 */
struct herald_flow_table {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	/*
	 * Sizes rather than __type(): clang emits only a forward declaration for a struct reached
	 * through the pointers of an inner map definition, and a loader cannot size one.
	 */
	__uint(key_size, sizeof(struct herald_flow_key));
	__uint(value_size, sizeof(struct herald_flow));
};

/*
 * CPU id (modulo HERALD_MAX_CPUS) -> that CPU's flow table. RSS keeps a flow on one CPU, so
 * its packets find it there; a flow whose packets move to another CPU falls back to its VIP's
 * Maglev table (the same backend while the table is unchanged) and is stored again there.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, HERALD_MAX_CPUS);
	__type(key, __u32);
	__array(values, struct herald_flow_table);
} herald_flows SEC(".maps");

/*
 * Each CPU's flow cache (struct herald_flow_cached): the flows it forwarded lately, in front
 * of its flow table. Per CPU, so only the CPU that owns a slot writes it; user space reads.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HERALD_FLOW_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct herald_flow_cached);
} herald_fcache SEC(".maps");

/* Program-wide settings, entry 0. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct herald_config);
} herald_config SEC(".maps");

/* Packets, bytes and flow-table hits/misses per VIP id, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HERALD_MAX_VIPS);
	__type(key, __u32);
	__type(value, struct herald_vip_stats);
} herald_vip_stat SEC(".maps");

/* Packets and bytes per backend id, and the next-hop cache, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HERALD_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct herald_backend_stats);
} herald_be_stats SEC(".maps");

/* Dropped VIP packets per reason (HERALD_DROP_*), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HERALD_DROP_MAX);
	__type(key, __u32);
	__type(value, __u64);
} herald_drops SEC(".maps");

/* Event counts (HERALD_EV_*: flow table hits and misses, ICMP answers...), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HERALD_EV_MAX);
	__type(key, __u32);
	__type(value, __u64);
} herald_events SEC(".maps");

/* New-flow rate window of each CPU, for skipping flow inserts under a flood. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct herald_flood);
} herald_flood SEC(".maps");


#endif /* HERALD_MAPS_H */

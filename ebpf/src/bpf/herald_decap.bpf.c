/* SPDX-License-Identifier: Apache-2.0 */
/*
 * herald_decap: TC ingress on backend hosts. Strips the outer header of IPIP (IPv4 in IPv4)
 * and IP6IP6 (IPv6 in IPv6) packets so the inner packet, addressed to a VIP bound on this
 * host, reaches the local stack. Kernels without the ipip/ip6_tunnel devices (ours) need
 * this; on others it saves the device.
 *
 * Uses bpf_skb_adjust_room with BPF_F_ADJ_ROOM_DECAP_L3_* (Linux 6.3+), which also fixes the
 * skb's encapsulation state. Anything else passes untouched (TC_ACT_OK).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "herald.h"

/* Not in Debian 12's linux-libc-dev (6.1) yet. */
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#endif

char LICENSE[] SEC("license") = "GPL";

/* Entry 0: packets decapsulated; entry 1: decapsulation failures (per CPU). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct herald_counter);
} herald_decap_st SEC(".maps");

static __always_inline void count(__u32 idx, __u64 bytes)
{
	struct herald_counter *c = bpf_map_lookup_elem(&herald_decap_st, &idx);

	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

SEC("classifier")
int herald_decap(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u64 len = skb->len;
	int shrink;
	__u64 flags;

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = (void *)(eth + 1);

		if ((void *)(iph + 1) > data_end)
			return TC_ACT_OK;
		if (iph->version != 4 || iph->protocol != IPPROTO_IPIP || iph->ihl < 5)
			return TC_ACT_OK;
		if (iph->frag_off & bpf_htons(0x3fff))
			return TC_ACT_OK;
		shrink = iph->ihl * 4;
		flags = BPF_F_ADJ_ROOM_DECAP_L3_IPV4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = (void *)(eth + 1);

		if ((void *)(ip6h + 1) > data_end)
			return TC_ACT_OK;
		if (ip6h->nexthdr != IPPROTO_IPV6)
			return TC_ACT_OK;
		shrink = sizeof(*ip6h);
		flags = BPF_F_ADJ_ROOM_DECAP_L3_IPV6;
	} else {
		return TC_ACT_OK;
	}
	if (bpf_skb_adjust_room(skb, -shrink, BPF_ADJ_ROOM_MAC, flags)) {
		count(1, len);
		return TC_ACT_SHOT;
	}
	count(0, len);
	return TC_ACT_OK;
}

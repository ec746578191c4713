/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Packet parsing for the XDP balancer: from the Ethernet header to the flow key. Every
 * helper checks bounds against data_end before reading and reports "not ours" for anything
 * it does not understand, so the caller passes such packets up untouched.
 */
#ifndef HERALD_PARSE_H
#define HERALD_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/icmpv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "herald.h"

#ifndef ETH_P_8021Q
#define ETH_P_8021Q 0x8100
#endif

/* ICMPv4 (RFC 792). <linux/icmp.h> drags in libc headers, so the few needed bits are here. */
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	union {
		struct {
			__be16 __unused;
			__be16 mtu;
		} frag;
		__be32 gateway;
	} un;
};

#define HERALD_IP_MF 0x2000
#define HERALD_IP_OFFSET 0x1fff

/*
 * What the parser learnt about one packet. 8-byte aligned: the flow cache compares keys as
 * five 64-bit words.
 */
struct __attribute__((aligned(8))) packet {
	struct herald_flow_key key; /* as the client sent it */
	__u32 l3_off;               /* offset of the (inner-most parsed) IP header */
	__u32 ip_len;               /* IP total length from the header (header + payload) */
	__u8 tcp_flags;             /* TCP flags byte, 0 for other protocols */
	__u8 icmp_error;            /* 1: an ICMP error about the flow in `key` */
	__u8 tos;                   /* DSCP/ECN (IPv4 TOS, IPv6 traffic class) to copy outward */
	__u8 df;                    /* IPv4 don't-fragment bit set */
};

#define HERALD_TCP_SYN 0x02
#define HERALD_TCP_ACK 0x10

/* Reads the source and destination ports at `l4` (TCP and UDP start alike). */
static __always_inline int parse_ports(void *l4, void *data_end, struct herald_flow_key *key)
{
	__be16 *ports = l4;

	if ((void *)(ports + 2) > data_end)
		return -1;
	key->sport = ports[0];
	key->dport = ports[1];
	return 0;
}

/*
 * The quoted packet of an ICMPv4 error (RFC 792: its IP header and the first 8 bytes of its
 * payload). The quoted packet went from the VIP to the client, so the flow key is its tuple
 * with source and destination swapped.
 */
static __always_inline int parse_icmp4_quote(void *inner, void *data_end, struct packet *pkt)
{
	struct iphdr *iph = inner;
	__u32 ihl;

	if ((void *)(iph + 1) > data_end)
		return -1;
	ihl = iph->ihl * 4;
	if (iph->version != 4 || ihl < sizeof(*iph))
		return -1;
	if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)
		return -1;
	if (inner + ihl + 4 > data_end)
		return -1;
	__builtin_memcpy(pkt->key.src, &iph->daddr, 4);
	__builtin_memcpy(pkt->key.dst, &iph->saddr, 4);
	pkt->key.proto = iph->protocol;
	if (parse_ports(inner + ihl, data_end, &pkt->key))
		return -1;
	/* Swap ports: the quoted source port is the VIP's. */
	__be16 p = pkt->key.sport;
	pkt->key.sport = pkt->key.dport;
	pkt->key.dport = p;
	pkt->icmp_error = 1;
	return 0;
}

/* The quoted packet of an ICMPv6 error (RFC 4443 §2.4: as much of it as fits). */
static __always_inline int parse_icmp6_quote(void *inner, void *data_end, struct packet *pkt)
{
	struct ipv6hdr *ip6h = inner;

	if ((void *)(ip6h + 1) > data_end)
		return -1;
	if (ip6h->nexthdr != IPPROTO_TCP && ip6h->nexthdr != IPPROTO_UDP)
		return -1;
	__builtin_memcpy(pkt->key.src, &ip6h->daddr, 16);
	__builtin_memcpy(pkt->key.dst, &ip6h->saddr, 16);
	pkt->key.proto = ip6h->nexthdr;
	if (parse_ports(ip6h + 1, data_end, &pkt->key))
		return -1;
	__be16 p = pkt->key.sport;
	pkt->key.sport = pkt->key.dport;
	pkt->key.dport = p;
	pkt->icmp_error = 1;
	return 0;
}

/* The transport header at `l4` for protocol `proto`. */
static __always_inline int parse_l4(void *l4, void *data_end, __u8 proto, struct packet *pkt)
{
	pkt->key.proto = proto;
	switch (proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end || th->doff < 5)
			return -1;
		pkt->tcp_flags = ((__u8 *)th)[13];
		return parse_ports(l4, data_end, &pkt->key);
	}
	case IPPROTO_UDP:
		if (l4 + sizeof(struct udphdr) > data_end)
			return -1;
		return parse_ports(l4, data_end, &pkt->key);
	case IPPROTO_ICMP: {
		struct icmphdr *ih = l4;

		if ((void *)(ih + 1) > data_end)
			return -1;
		if (ih->type != ICMP_DEST_UNREACH)
			return -1;
		return parse_icmp4_quote(ih + 1, data_end, pkt);
	}
	case IPPROTO_ICMPV6: {
		struct icmp6hdr *ih = l4;

		if ((void *)(ih + 1) > data_end)
			return -1;
		if (ih->icmp6_type != ICMPV6_PKT_TOOBIG && ih->icmp6_type != ICMPV6_DEST_UNREACH)
			return -1;
		return parse_icmp6_quote(ih + 1, data_end, pkt);
	}
	}
	return -1;
}

/*
 * Parses Ethernet (at most one 802.1Q tag), IPv4 or IPv6, and TCP/UDP or an ICMP error.
 * Returns 0 when `pkt` describes a packet the balancer may handle, -1 otherwise: not IP,
 * fragments, IPv6 extension headers, truncated or inconsistent headers.
 */
static __always_inline int parse_packet(void *data, void *data_end, struct packet *pkt)
{
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__be16 proto;

	if ((void *)(eth + 1) > data_end)
		return -1;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q)) {
		__be16 *vlan = data + off; /* TCI, then the encapsulated EtherType */

		if ((void *)(vlan + 2) > data_end)
			return -1;
		proto = vlan[1];
		off += 4;
	}
	pkt->l3_off = off;

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = data + off;
		__u32 ihl;

		if ((void *)(iph + 1) > data_end)
			return -1;
		ihl = iph->ihl * 4;
		if (iph->version != 4 || ihl < sizeof(*iph))
			return -1;
		pkt->ip_len = bpf_ntohs(iph->tot_len);
		if (pkt->ip_len < ihl || data + off + pkt->ip_len > data_end)
			return -1;
		if (iph->frag_off & bpf_htons(HERALD_IP_MF | HERALD_IP_OFFSET))
			return -1;
		pkt->df = !!(iph->frag_off & bpf_htons(0x4000));
		pkt->tos = iph->tos;
		pkt->key.family = HERALD_FAMILY_V4;
		__builtin_memcpy(pkt->key.src, &iph->saddr, 4);
		__builtin_memcpy(pkt->key.dst, &iph->daddr, 4);
		return parse_l4((void *)iph + ihl, data_end, iph->protocol, pkt);
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = data + off;

		if ((void *)(ip6h + 1) > data_end)
			return -1;
		if (ip6h->version != 6)
			return -1;
		pkt->ip_len = bpf_ntohs(ip6h->payload_len) + sizeof(*ip6h);
		if (data + off + pkt->ip_len > data_end)
			return -1;
		pkt->tos = (ip6h->priority << 4) | (ip6h->flow_lbl[0] >> 4);
		pkt->df = 1;
		pkt->key.family = HERALD_FAMILY_V6;
		__builtin_memcpy(pkt->key.src, &ip6h->saddr, 16);
		__builtin_memcpy(pkt->key.dst, &ip6h->daddr, 16);
		return parse_l4(ip6h + 1, data_end, ip6h->nexthdr, pkt);
	}
	return -1;
}

#endif /* HERALD_PARSE_H */

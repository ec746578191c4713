/* Host program run by build.rs: prints the layout of every struct and the value of every
 * constant in herald.h, so the Rust mirrors can be checked against what clang sees. */
#include <stddef.h>
#include <stdio.h>

#include "herald.h"

#define S(t) printf("size %s %zu\n", #t, sizeof(struct t))
#define F(t, f) printf("offset %s.%s %zu\n", #t, #f, offsetof(struct t, f))
#define C(c) printf("const %s %llu\n", #c, (unsigned long long)(c))
#define N(c) printf("name %s %s\n", #c, c)

int main(void)
{
	S(herald_vip_key); F(herald_vip_key, addr); F(herald_vip_key, port);
	F(herald_vip_key, proto); F(herald_vip_key, family);
	S(herald_vip); F(herald_vip, id); F(herald_vip, generation);
	S(herald_backend); F(herald_backend, addr); F(herald_backend, family);
	F(herald_backend, flags); F(herald_backend, generation);
	S(herald_flow_key); F(herald_flow_key, src); F(herald_flow_key, dst);
	F(herald_flow_key, sport); F(herald_flow_key, dport); F(herald_flow_key, proto);
	F(herald_flow_key, family); F(herald_flow_key, pad);
	S(herald_flow); F(herald_flow, backend); F(herald_flow, vip); F(herald_flow, hash); F(herald_flow, vip_gen);
	S(herald_flow_cached); F(herald_flow_cached, key); F(herald_flow_cached, flow);
	F(herald_flow_cached, pending); F(herald_flow_cached, pad);
	S(herald_vip_stats); F(herald_vip_stats, packets); F(herald_vip_stats, bytes);
	F(herald_vip_stats, lru_hit); F(herald_vip_stats, lru_miss);
	S(herald_backend_stats); F(herald_backend_stats, packets); F(herald_backend_stats, bytes);
	F(herald_backend_stats, nh_expires); F(herald_backend_stats, nh_ifindex);
	F(herald_backend_stats, nh_iif); F(herald_backend_stats, nh_ok_len);
	F(herald_backend_stats, nh_dmac); F(herald_backend_stats, nh_smac);
	F(herald_backend_stats, nh_generation); F(herald_backend_stats, pad);
	S(herald_counter); F(herald_counter, packets); F(herald_counter, bytes);
	S(herald_config); F(herald_config, encap_src4); F(herald_config, encap_src6);
	F(herald_config, max_new_flows); F(herald_config, flags);
	S(herald_flood); F(herald_flood, window_start_ns); F(herald_flood, count);
	C(HERALD_VIP_FILTER_WORDS); C(HERALD_MAX_VIPS); C(HERALD_MAX_BACKENDS); C(HERALD_MAX_FLOWS);
	C(HERALD_MAX_CPUS); C(HERALD_FLOW_CACHE_SLOTS);
	C(HERALD_MAGLEV_DEFAULT_SIZE); C(HERALD_MAGLEV_MAX_SIZE); C(HERALD_HASH_SEED);
	C(HERALD_FAMILY_V4); C(HERALD_FAMILY_V6); C(HERALD_BACKEND_LOCAL);
	C(HERALD_DROP_NO_BACKEND); C(HERALD_DROP_FAMILY); C(HERALD_DROP_FIB);
	C(HERALD_DROP_NO_NEIGH); C(HERALD_DROP_HEADROOM); C(HERALD_DROP_TOO_BIG);
	C(HERALD_DROP_MAX); 
	C(HERALD_EV_FLOW_SKIPPED); C(HERALD_EV_ICMP_TOO_BIG); C(HERALD_EV_ICMP_FOLLOWED);
	C(HERALD_EV_LOCAL); C(HERALD_EV_MAX);
	N(HERALD_MAP_VIPS); N(HERALD_MAP_BACKENDS); N(HERALD_MAP_MAGLEV); N(HERALD_MAP_FLOWS);
	N(HERALD_MAP_CONFIG); N(HERALD_MAP_VIP_STATS); N(HERALD_MAP_BE_STATS);
	N(HERALD_MAP_DROPS); N(HERALD_MAP_EVENTS); N(HERALD_MAP_FLOOD);
	N(HERALD_MAP_DECAP_STATS); N(HERALD_MAP_VIP_BITS); N(HERALD_MAP_FLOW_CACHE);
	/* The flow hash of a fixed key, so the Rust mirror can be checked without BPF. */
	{
		struct herald_flow_key k = { .src = { 10, 0, 0, 1 }, .dst = { 192, 0, 2, 10 },
					     .sport = 0x3930, .dport = 0x5000, .proto = 6,
					     .family = HERALD_FAMILY_V4 };
		printf("hash v4 %u\n", herald_flow_hash((const __u32 *)&k));
		struct herald_flow_key k6 = { .src = { 0x20, 1, 0xd, 0xb8, [15] = 1 },
					      .dst = { 0x20, 1, 0xd, 0xb8, [14] = 1, [15] = 2 },
					      .sport = 0xffff, .dport = 0xbb01, .proto = 17,
					      .family = HERALD_FAMILY_V6 };
		printf("hash v6 %u\n", herald_flow_hash((const __u32 *)&k6));
		printf("slot v4 %u\n", herald_flow_cache_slot((const __u32 *)&k));
		printf("slot v6 %u\n", herald_flow_cache_slot((const __u32 *)&k6));
		printf("bit v4 %u\n", herald_vip_filter_bit((const __u32 *)k.dst));
		printf("bit v6 %u\n", herald_vip_filter_bit((const __u32 *)k6.dst));
	}
	return 0;
}

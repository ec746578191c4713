#!/usr/bin/env bash
# `make demo`: Herald standalone end to end in network namespaces on this machine.
#
#   client 10.10.0.100 ─┐                 ┌─ be1 10.20.0.11
#   node1  10.10.0.11  ─┼─ LAN ─ router ─ ┼─ be2 10.20.0.12     (backend net)
#   node2  10.10.0.12  ─┘   10.10.0.1     └─ be3 10.20.0.13
#                        (BIRD, AS 64513)  10.20.0.1
#
# node1 and node2 run `herald-speaker standalone` with examples/demo/lb.yaml and announce the
# Services' addresses to the router over BGP; the router installs them as ECMP routes. Their
# XDP program (--xdp-interface eth0) balances the web VIP to the three backend hosts, which run
# `herald-speaker standalone --decap` and a small HTTP server, and answer the client directly.
# Everything this script creates is removed at the end, on Ctrl-C and on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

[[ $(id -u) -eq 0 ]] || { echo "demo: run as root (network namespaces)" >&2; exit 1; }
for cmd in ip bird birdc arping python3 ethtool mount; do
  command -v "$cmd" >/dev/null || { echo "demo: $cmd missing; run 'make demo' (it installs it)" >&2; exit 1; }
done

BIN=${HERALD_BIN:-${CARGO_TARGET_DIR:-target}/debug/herald-speaker}
PASS=$(dirname "$BIN")/herald-xdp-pass
for b in "$BIN" "$PASS"; do
  [[ -x $b ]] || { echo "demo: $b not built; run 'make demo'" >&2; exit 1; }
done
CONFIG=$PWD/examples/demo/lb.yaml
P=hd$$                       # prefix: unique per run, so two demos never collide
WORK=$(mktemp -d /tmp/herald-demo.XXXXXX)
NSS=(lan bnet router node1 node2 client be1 be2 be3)
PIDS=()

ns() { echo "$P-$1"; }
nx() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
  local rc=$?
  if ((rc != 0)); then
    for log in "$WORK"/*.log; do
      [[ -f $log ]] && { echo "--- last lines of $(basename "$log")" >&2; tail -5 "$log" >&2; }
    done
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for n in "${NSS[@]}"; do ip netns del "$(ns "$n")" 2>/dev/null || true; done
  umount -l "$WORK/bpf" 2>/dev/null || true
  rm -rf "$WORK"
  if ((rc != 0)); then echo "demo: failed (exit $rc); everything it created is removed" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND every 0.2 s until it succeeds.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then echo "demo: timed out waiting for $what" >&2; return 1; fi
    sleep 0.2
  done
}

# link BRIDGE_NS HOST_NS IFNAME ADDR: a veth from HOST_NS (named IFNAME) into BRIDGE_NS's bridge.
link() {
  local br=$1 host=$2 ifname=$3 addr=$4 peer="${2}${3}"
  ip -n "$(ns "$br")" link add "${peer:0:15}" type veth peer name "$ifname" netns "$(ns "$host")"
  ip -n "$(ns "$br")" link set "${peer:0:15}" master br0 up
  nx "$host" sysctl -qw "net.ipv6.conf.$ifname.accept_dad=0"
  ip -n "$(ns "$host")" addr add "$addr" dev "$ifname"
  ip -n "$(ns "$host")" link set "$ifname" up
}

say "building the lab ($P)"
for n in "${NSS[@]}"; do
  ip netns add "$(ns "$n")"
  ip -n "$(ns "$n")" link set lo up
done
for br in lan bnet; do
  ip -n "$(ns "$br")" link add br0 type bridge
  ip -n "$(ns "$br")" link set br0 up
done
link lan router lan0 10.10.0.1/24
link lan node1 eth0 10.10.0.11/24
link lan node2 eth0 10.10.0.12/24
link lan client eth0 10.10.0.100/24
link bnet router be0 10.20.0.1/24
for i in 1 2 3; do link bnet "be$i" eth0 "10.20.0.1$i/24"; done
nx router sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1
for n in node1 node2 client; do ip -n "$(ns "$n")" route add default via 10.10.0.1; done
for i in 1 2 3; do ip -n "$(ns "be$i")" route add default via 10.20.0.1; done
# The backends answer from the VIP straight to the client (direct server return): the router
# must not drop those replies for arriving where the VIP's route does not point.
for n in router be1 be2 be3; do nx "$n" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0; done
# The XDP program looks the next hop up in the FIB, which needs forwarding on.
for n in node1 node2; do nx "$n" sysctl -qw net.ipv4.ip_forward=1; done
# veth quirks a physical NIC does not have: TCP checksums left to "hardware" are lost on the
# XDP path (so the client computes them), and frames a node sends back out with XDP_TX are
# delivered only to a peer that runs XDP itself (a pass-everything program on the bridge ports).
nx client ethtool -K eth0 tx off >/dev/null
ip netns exec "$(ns lan)" "$PASS" node1eth0 node2eth0 >"$WORK/xdp-pass.log" 2>&1 &
PIDS+=($!)
wait_for "the bridge ports' pass program" 10 grep -q attached "$WORK/xdp-pass.log"
# Pinned maps live here (a bpf filesystem of the demo's own), so a restarted speaker would
# adopt them; removed at the end.
mkdir -p "$WORK/bpf" && mount -t bpf bpf "$WORK/bpf"

cat >"$WORK/bird.conf" <<BIRD
router id 10.10.0.1;
protocol device { }
protocol kernel { ipv4 { export all; }; merge paths on; }
template bgp node {
  local 10.10.0.1 as 64513;
  passive on;
  graceful restart on;
  ipv4 { import all; export none; };
}
protocol bgp node1 from node { neighbor 10.10.0.11 as 64512; }
protocol bgp node2 from node { neighbor 10.10.0.12 as 64512; }
BIRD
# Started with `ip netns exec` directly (not through a shell function), so $! is the
# daemon's own pid and cleanup ends exactly it.
ip netns exec "$(ns router)" bird -f -c "$WORK/bird.conf" -s "$WORK/bird.ctl" -P "$WORK/bird.pid" \
  >"$WORK/bird.log" 2>&1 &
PIDS+=($!)
wait_for "BIRD" 10 birdc -s "$WORK/bird.ctl" show status

say "starting the backends: an HTTP server and herald-speaker standalone --decap on be1..be3"
for i in 1 2 3; do
  mkdir -p "$WORK/www$i" && echo "be$i" >"$WORK/www$i/index.html"
  ip netns exec "$(ns "be$i")" python3 -m http.server 80 --bind :: --directory "$WORK/www$i" \
    >"$WORK/http$i.log" 2>&1 &
  PIDS+=($!)
  ip netns exec "$(ns "be$i")" "$BIN" standalone --config "$CONFIG" --node-name "be$i" \
    --state-dir "$WORK/be$i-state" --decap --bpf-pin-dir "$WORK/bpf/be$i" >"$WORK/be$i.log" 2>&1 &
  PIDS+=($!)
done

say "starting herald-speaker standalone on node1 and node2 (BGP, layer 2, XDP on eth0)"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/gossip.key"   # shared gossip key
declare -A SPEAKER IP=([node1]=10.10.0.11 [node2]=10.10.0.12) OTHER=([node1]=node2 [node2]=node1)
for n in node1 node2; do
  ip netns exec "$(ns "$n")" "$BIN" standalone --config "$CONFIG" --node-name "$n" \
    --state-dir "$WORK/$n-state" --admin-addr 127.0.0.1:9471 \
    --gossip-bind "${IP[$n]}:7946" --gossip-peer "${IP[${OTHER[$n]}]}:7946" \
    --gossip-key-file "$WORK/gossip.key" \
    --xdp-interface eth0 --bpf-pin-dir "$WORK/bpf/$n" >"$WORK/$n.log" 2>&1 &
  PIDS+=($!)
  SPEAKER[$n]=$!
done
wait_for "both BGP sessions" 30 bash -c \
  "birdc -s '$WORK/bird.ctl' show protocols | grep -E '^node[12] .*Established' | wc -l | grep -qx 2"

VIP=$(nx node1 "$BIN" status --json | python3 -c \
  'import json,sys; s=json.load(sys.stdin); print([x["addresses"][0] for x in s["services"] if x["service"]=="demo/web"][0])')
say "the router's routes for the web VIP $VIP (one per node: ECMP)"
wait_for "two next hops for $VIP" 30 bash -c \
  "ip -n $(ns router) route show $VIP | grep -c nexthop | grep -qx 2"
birdc -s "$WORK/bird.ctl" show route "$VIP/32" all
echo
ip -n "$(ns router)" route show "$VIP"

say "100 HTTP requests from the client to http://$VIP/ (XDP on the nodes -> backends)"
for i in 1 2 3; do
  wait_for "be$i to bind $VIP" 20 bash -c "ip -n $(ns "be$i") addr show dev lo | grep -q '$VIP/32'"
done
nx client python3 - "$VIP" <<'PY'
import collections, sys, urllib.request
vip, spread, failed = sys.argv[1], collections.Counter(), 0
for _ in range(100):
    try:
        with urllib.request.urlopen(f"http://{vip}/", timeout=3) as r:
            spread[r.read().decode().strip()] += 1
    except OSError as e:
        failed += 1
        print("request failed:", e)
for name, n in sorted(spread.items()):
    print(f"  {name}: {n:3d} {'#' * n}")
print(f"{sum(spread.values())} answered, {failed} failed")
sys.exit(1 if failed or len(spread) < 3 else 0)
PY
# web_packets NODE: packets the node's XDP program forwarded for demo/web (status refreshes
# its counters twice a second).
web_packets() {
  nx "$1" "$BIN" status --json | python3 -c \
    'import json,sys; d=json.load(sys.stdin)["dataplane"]; print(sum(v["packets"] for v in d["vips"] if v["service"] == "demo/web"))'
}
# Each request is at least SYN, ACK and request from the client, all through XDP.
deadline=$((SECONDS + 10))
until (( $(web_packets node1) + $(web_packets node2) >= 300 )); do
  ((SECONDS < deadline)) || { echo "demo: the nodes' XDP counters stay below 300 packets" >&2; exit 1; }
  sleep 0.2
done
echo "XDP counters on the nodes (packets the fast path forwarded; ECMP at the router splits the"
echo "clients' connections between node1 and node2, Maglev picks the same backend on either):"
for n in node1 node2; do
  echo "  $n: $(web_packets "$n") packets for demo/web"
done

mac() { ip -n "$(ns "$1")" -o link show dev eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2; }
# arp_owner ADDR: the node whose MAC answers one ARP request from the client (empty if none).
arp_owner() {
  local m
  m=$(nx client arping -c 1 -w 1 -I eth0 "$1" 2>/dev/null | grep -o '\[[0-9A-Fa-f:]*\]' | head -1 | tr -d '[]' | tr 'A-F' 'a-f')
  for n in node1 node2; do [[ -n $m && $m == "$(mac "$n")" ]] && echo "$n"; done
  return 0
}

L2VIP=$(nx node1 "$BIN" status --json | python3 -c \
  'import json,sys; s=json.load(sys.stdin); print([x["addresses"][0] for x in s["services"] if x["service"]=="demo/intranet"][0])')
say "layer 2: who answers ARP for the intranet VIP $L2VIP"
wait_for "an ARP answer for $L2VIP" 20 bash -c "[[ -n \$(ip netns exec $(ns client) arping -c 1 -w 1 -I eth0 $L2VIP | grep 'reply from') ]]"
OWNER=$(arp_owner "$L2VIP")
echo "owner: $OWNER ($(mac "$OWNER")); node1 is $(mac node1), node2 is $(mac node2)"
nx client arping -c 3 -w 3 -I eth0 "$L2VIP" || true

say "layer 2 failover: killing herald-speaker on $OWNER (SIGKILL)"
SURVIVOR=${OTHER[$OWNER]}
start=$(date +%s%N)
kill -KILL "${SPEAKER[$OWNER]}"
wait "${SPEAKER[$OWNER]}" 2>/dev/null || true
until [[ $(arp_owner "$L2VIP") == "$SURVIVOR" ]]; do
  (( ($(date +%s%N) - start) / 1000000 < 10000 )) || { echo "demo: no takeover within 10 s" >&2; exit 1; }
done
echo "$SURVIVOR answers for $L2VIP now: first answered arping $(( ($(date +%s%N) - start) / 1000000 )) ms after the kill."
echo "(An unanswered arping waits 1 s, so this is an upper bound; docs/benchmarks.md has the"
echo " failover measured on the wire: median ~0.4 s.)"

say "herald-speaker status on $SURVIVOR"
nx "$SURVIVOR" "$BIN" status

say "done: removing the lab"

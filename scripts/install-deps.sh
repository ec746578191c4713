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
  clang             # herald-ebpf build.rs: compiles the eBPF programs (-target bpf)
  libbpf-dev        # herald-ebpf: bpf_helpers.h and friends for the eBPF programs
  ethtool           # herald-ebpf e2e: checksum offload off on the client veth
  iptables          # herald-ebpf pps bench: the kube-proxy iptables-mode anchor
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

if ! command -v cargo >/dev/null 2>&1; then
  cat >&2 <<'MSG'
install-deps: no Rust toolchain found. Herald needs Rust stable (edition 2024, rustc >= 1.89);
Debian 12's rustc is too old. Install rustup (https://rustup.rs) and run again.
MSG
  exit 1
fi

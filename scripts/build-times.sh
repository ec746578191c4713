#!/bin/bash
# Clean release build times of herald-controller and herald-speaker, and the rebuild after
# touching one allocator file and one controller-only file, for two commits (issue 16's
# before/after figures in docs/benchmarks.md). Each commit is checked out in a temporary
# worktree and built in its own fresh target directories; run on an otherwise idle machine.
#
#   scripts/build-times.sh BEFORE AFTER [SAMPLES]
set -euo pipefail
before=${1:?usage: build-times.sh BEFORE AFTER [SAMPLES]}
after=${2:?usage: build-times.sh BEFORE AFTER [SAMPLES]}
samples=${3:-2}
work=$(mktemp -d /tmp/herald-build-times.XXXXXX)
trap 'git worktree remove --force "$work/before" 2>/dev/null || true;
      git worktree remove --force "$work/after" 2>/dev/null || true; rm -rf "$work"' EXIT

secs() { local s e; s=$(date +%s.%N); "$@" > "$work/last.log" 2>&1 || { cat "$work/last.log" >&2; exit 1; }
         e=$(date +%s.%N); echo "$e - $s" | bc; }
build() { cargo build --release --locked "$@"; }

for side in before after; do
  commit=${!side}
  git worktree add --detach "$work/$side" "$commit" > /dev/null
  cd "$work/$side"
  # The allocator moved from the controller to herald-ipam with the split.
  alloc=ipam/src/allocator.rs
  [ -f "$alloc" ] || alloc=controller/src/ipam/allocator.rs
  echo "$side ($commit) clean herald-controller: $(secs build -p herald-controller --target-dir "$work/$side-ctl") s"
  echo "$side ($commit) clean herald-speaker: $(secs build -p herald-speaker --target-dir "$work/$side-spk") s"
  build -p herald-controller -p herald-speaker --target-dir "$work/$side-spk" > /dev/null 2>&1
  for _ in $(seq "$samples"); do
    touch "$alloc"
    echo "$side touch $alloc, rebuild both: $(secs build -p herald-controller -p herald-speaker --target-dir "$work/$side-spk") s"
  done
  for _ in $(seq "$samples"); do
    touch controller/src/announced.rs
    echo "$side touch controller/src/announced.rs, rebuild herald-speaker: $(secs build -p herald-speaker --target-dir "$work/$side-spk") s"
  done
  cd - > /dev/null
done

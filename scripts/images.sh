#!/bin/sh
# Builds the herald-controller and herald-speaker images with podman from deploy/Dockerfile,
# without a registry: the runtime base is Debian bookworm made here with debootstrap
# (minbase) and imported into podman's storage once, and the binaries are the ones already
# built in target/$PROFILE (`make dist` for the shipped ones). Run as root from the repo root.
#
#   PROFILE  target/ subdirectory the binaries come from (dist; the tests use debug)
#   TAG      image tag (dev): localhost/herald-controller:$TAG, localhost/herald-speaker:$TAG
#   BASE     base image (localhost/herald-base:bookworm, made if missing)
#   PODMAN   podman command (podman --runtime runc: crun cannot run on a hybrid cgroup
#            hierarchy, which this machine has)
#   MIRROR   Debian mirror for debootstrap (default: the one apt uses)
set -eu

PROFILE=${PROFILE:-dist}
TAG=${TAG:-dev}
BASE=${BASE:-localhost/herald-base:bookworm}
PODMAN=${PODMAN:-podman --runtime runc}
# The Debian mirror apt already uses, so a machine that reaches only that one can build.
default_mirror=$(sed -n 's|^URIs: *\([^ ]*/debian\)/*$|\1|p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
MIRROR=${MIRROR:-${default_mirror:-http://deb.debian.org/debian}}

for bin in herald-controller herald-speaker; do
    if [ ! -x "target/$PROFILE/$bin" ]; then
        echo "images: target/$PROFILE/$bin is missing: build it first (make dist)" >&2
        exit 1
    fi
done

if ! $PODMAN image exists "$BASE"; then
    root=$(mktemp -d /tmp/herald-base.XXXXXX)
    trap 'rm -rf "$root"' EXIT
    echo "images: making $BASE with debootstrap (minbase bookworm)"
    # CA certificates as in distroless: the Kubernetes client (rustls) refuses to start with
    # none in the system store, even when the kubeconfig names the cluster's CA.
    debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$MIRROR" \
        > "$root.log" 2>&1 \
        || { cat "$root.log" >&2; exit 1; }
    rm -f "$root.log"
    # What a runtime base does not need: package lists, caches, documentation.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* \
        "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
    tar -C "$root" -c . | $PODMAN import - "$BASE" > /dev/null
fi

for target in controller speaker; do
    $PODMAN build --quiet -f deploy/Dockerfile --target "$target" \
        --build-arg BINARIES=prebuilt --build-arg PROFILE="$PROFILE" \
        --build-arg BASE="$BASE" --build-arg BASE_NONROOT="$BASE" \
        -t "localhost/herald-$target:$TAG" . > /dev/null
    size=$($PODMAN image inspect --format '{{.Size}}' "localhost/herald-$target:$TAG")
    echo "images: localhost/herald-$target:$TAG $((size / 1048576)) MiB"
done

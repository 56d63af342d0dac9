#!/usr/bin/env bash
# Makes the Dockerfile's two base images without an image registry: a Debian bookworm rootfs
# from debootstrap (imported as localhost/wcgi-base/debian:bookworm) and, on top of it, a build
# image with gcc and this machine's Rust toolchain and crate cache (localhost/wcgi-base/rust:
# VERSION), so the build runs --offline. Prints the `podman build` flags that use them.
# Needs root, debootstrap and podman (apt-get install debootstrap podman runc).
set -euo pipefail
WORK="${WCGI_IMAGE_WORK:-/var/tmp/wcgi-rootfs}"
RUNTIME=localhost/wcgi-base/debian:bookworm
RUST_VERSION="$(rustc -V | cut -d' ' -f2)"
BUILDER="localhost/wcgi-base/rust:$RUST_VERSION"
# Debian's podman defaults (crun, systemd cgroups) fail on hybrid-cgroup machines.
PODMAN=(podman --runtime /usr/sbin/runc --cgroup-manager=cgroupfs)

log() { echo "local-base-images: $*" >&2; }

if [ ! -x "$WORK/bookworm/bin/bash" ]; then
    log "bootstrapping Debian bookworm (minbase) into $WORK/bookworm"
    rm -rf "$WORK/bookworm.partial"
    mkdir -p "$WORK"
    debootstrap --variant=minbase bookworm "$WORK/bookworm.partial" http://deb.debian.org/debian >&2
    mv "$WORK/bookworm.partial" "$WORK/bookworm"
fi
if ! "${PODMAN[@]}" image exists "$RUNTIME"; then
    log "importing $RUNTIME"
    tar -C "$WORK/bookworm" -c . | "${PODMAN[@]}" import - "$RUNTIME" >&2
fi
if ! "${PODMAN[@]}" image exists "$BUILDER"; then
    log "making $BUILDER (gcc, Rust $RUST_VERSION, the crate cache)"
    builder="$WORK/builder"
    rm -rf "$builder"
    cp -a "$WORK/bookworm" "$builder"
    cp /etc/resolv.conf "$builder/etc/resolv.conf"
    chroot "$builder" apt-get update -qq >&2
    chroot "$builder" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        gcc libc6-dev ca-certificates >&2
    chroot "$builder" apt-get clean
    sysroot="$(rustc --print sysroot)"
    mkdir -p "$builder/usr/local/rust"
    cp -a "$sysroot/bin" "$sysroot/lib" "$sysroot/libexec" "$builder/usr/local/rust/"
    mkdir -p "$builder/usr/local/cargo"
    cp -a "${CARGO_HOME:-$HOME/.cargo}/registry" "$builder/usr/local/cargo/"
    tar -C "$builder" -c . | "${PODMAN[@]}" import \
        --change 'ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        - "$BUILDER" >&2
    rm -rf "$builder"
fi
echo "--build-arg BUILD_IMAGE=$BUILDER --build-arg RUNTIME_IMAGE=$RUNTIME --build-arg CARGO_FLAGS=--offline"

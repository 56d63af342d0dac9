#!/usr/bin/env bash
# Builds the image (on the local base images unless BUILD_FLAGS names others) and checks it:
# it serves examples/hello mounted at /srv/app as a non-root user, answers the health path,
# exits 0 on SIGTERM (podman stop), and serves from a cache volume mounted read-only that
# `wcgi compile` filled. Loopback only. Needs root, podman, runc, debootstrap.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Debian's podman defaults (crun, systemd cgroups) fail on hybrid-cgroup machines, and
# setting rlimits is refused there unless given explicitly.
PODMAN=(podman --runtime /usr/sbin/runc --cgroup-manager=cgroupfs)
RUN_LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
IMAGE=localhost/wcgi:latest
PORT="${PORT:-8150}"
TARGET="${XDG_CACHE_HOME:-$HOME/.cache}/wcgi-container-target"

read -r -a build_flags <<< "${BUILD_FLAGS:-$(deploy/container/local-base-images.sh)}"
mkdir -p "$TARGET"
started=$(date +%s)
"${PODMAN[@]}" build "${build_flags[@]}" \
    --build-arg CARGO_TARGET_DIR=/cargo-target -v "$TARGET:/cargo-target" \
    -f deploy/container/Dockerfile -t "$IMAGE" . >&2
echo "check: image built in $(( $(date +%s) - started ))s" >&2

name="wcgi-check-$$"
trap '"${PODMAN[@]}" rm -f "$name" >/dev/null 2>&1 || true' EXIT
"${PODMAN[@]}" run -d --name "$name" "${RUN_LIMITS[@]}" -p "127.0.0.1:$PORT:8000" \
    -v "$PWD/examples/hello:/srv/app:ro" "$IMAGE" >/dev/null
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
    sleep 0.1
done
[ "$(curl -s "http://127.0.0.1:$PORT/healthz")" = "ok" ] || { echo "check: no health answer" >&2; exit 1; }
curl -s "http://127.0.0.1:$PORT/" | grep -q "Hello from WebAssembly" \
    || { echo "check: the example was not served" >&2; exit 1; }
[ "$("${PODMAN[@]}" exec "$name" id -u)" = 10001 ] || { echo "check: not running as uid 10001" >&2; exit 1; }
"${PODMAN[@]}" stop -t 15 "$name" >/dev/null
status="$("${PODMAN[@]}" inspect "$name" --format '{{.State.ExitCode}}')"
[ "$status" = 0 ] || { echo "check: exit status $status after SIGTERM" >&2; exit 1; }

# A cache filled once by `wcgi compile`, then shared read-only: nothing is compiled again.
cache="$(mktemp -d)"
trap '"${PODMAN[@]}" rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$cache"' EXIT
chown 10001:10001 "$cache"
"${PODMAN[@]}" run --rm "${RUN_LIMITS[@]}" -v "$PWD/examples/hello:/srv/app:ro" \
    -v "$cache:/var/cache/wcgi" "$IMAGE" compile /srv/app >&2
"${PODMAN[@]}" rm -f "$name" >/dev/null
"${PODMAN[@]}" run -d --name "$name" "${RUN_LIMITS[@]}" -p "127.0.0.1:$PORT:8000" -e WCGI_LOG=debug \
    -v "$PWD/examples/hello:/srv/app:ro" -v "$cache:/var/cache/wcgi:ro" "$IMAGE" >/dev/null
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
    sleep 0.1
done
curl -s "http://127.0.0.1:$PORT/" | grep -q "Hello from WebAssembly" \
    || { echo "check: not served from the read-only cache" >&2; exit 1; }
"${PODMAN[@]}" logs "$name" 2>&1 | grep -q "loaded the compiled module from" \
    || { echo "check: the module was not loaded from the read-only cache" >&2; exit 1; }
"${PODMAN[@]}" stop -t 15 "$name" >/dev/null
echo "check: $IMAGE serves examples/hello as uid 10001, answers /healthz, exits 0 on SIGTERM, and starts from a read-only cache that wcgi compile filled"

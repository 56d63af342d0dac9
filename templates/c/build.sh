#!/bin/sh
# Builds main.wasm with Debian's clang and wasi-libc
# (apt-get install clang-14 lld-14 wasi-libc libclang-rt-dev-wasm32).
set -eu
cd "$(dirname "$0")"
CLANG="${CLANG:-$(command -v clang-14 || command -v clang || true)}"
if [ -z "$CLANG" ] || ! command -v "$CLANG" >/dev/null 2>&1; then
    echo "build.sh: clang is missing; on Debian or Ubuntu install it with:" >&2
    echo "  apt-get install clang-14 lld-14 wasi-libc libclang-rt-dev-wasm32" >&2
    echo "(or point CLANG at a clang that targets wasm32-wasi)" >&2
    exit 1
fi
"$CLANG" --target=wasm32-wasi -O2 -o main.wasm main.c

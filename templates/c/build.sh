#!/bin/sh
# Builds main.wasm with Debian's clang and wasi-libc
# (apt-get install clang-14 lld-14 wasi-libc libclang-rt-dev-wasm32).
set -eu
cd "$(dirname "$0")"
CLANG="${CLANG:-$(command -v clang-14 || command -v clang)}"
"$CLANG" --target=wasm32-wasi -O2 -o main.wasm main.c

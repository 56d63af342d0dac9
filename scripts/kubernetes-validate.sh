#!/usr/bin/env bash
# Installs the pinned kubernetes-validate (PyPI; it carries the Kubernetes JSON schemas, so it
# validates offline) into a virtualenv cached outside the work tree, and prints the path of
# its executable. Safe to run again: an installed venv is reused.
set -euo pipefail
VERSION="1.37.0"
BASE="${XDG_CACHE_HOME:-$HOME/.cache}/wcgi-tools"
VENV="$BASE/kubernetes-validate-$VERSION"
TOOL="$VENV/bin/kubernetes-validate"

if [ -x "$TOOL" ] && "$TOOL" --version >/dev/null 2>&1; then
    echo "$TOOL"
    exit 0
fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
        echo "kubernetes-validate: python3 with venv is needed (apt-get install python3-venv)" >&2
        exit 1
    fi
fi
rm -rf "$VENV.partial"
python3 -m venv "$VENV.partial"
"$VENV.partial/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$VERSION" >&2
rm -rf "$VENV"
# A venv's scripts name their interpreter by path: made under .partial, fix them up on the move.
mv "$VENV.partial" "$VENV"
sed -i "1s|$VENV.partial|$VENV|" "$VENV"/bin/* 2>/dev/null || true
"$TOOL" --version >/dev/null
echo "$TOOL"

#!/usr/bin/env bash
# Builds CPython 3.11.2 for wasm32-wasi (WASI preview 1), its standard library frozen in, and
# lays it out as a wcgi interpreter package (wasmer.toml + python.wasm + README + licences) in OUT.
#
# Usage: interpreters/python/build.sh [OUT]
#   OUT defaults to $WCGI_INTERPRETERS_DIR/python-3.11.2-<hash> (~/.cache/wcgi-interpreters/...),
#   <hash> = 12 hex of a sha256 over this script, freeze_stdlib.py, patches/ and the SQLite
#   patches it shares with php (../php/sqlite-patches/), so any change to the build inputs
#   gives a new OUT and an unchanged tree reuses the cached one.
# Prints OUT on stdout; messages go to stderr. A complete, verified OUT is reused at once.
#
# Inputs (all pinned):
#   - CPython: Debian bookworm source package python3.11=3.11.2-6+deb12u8 (apt-get source
#     through a private deb-src list; apt checks the files against the signed Sources index,
#     and the orig tarball -- upstream's Python-3.11.2.tgz, unmodified -- is also pinned
#     below). Only the pristine upstream tarball is used, not Debian's patches.
#   - zlib: Debian bookworm source package zlib=1:1.2.13.dfsg-1, its orig tarball (zlib 1.2.13;
#     "dfsg" = Debian dropped contrib/ files that are not built here).
#   - SQLite: the amalgamation in npm better-sqlite3@12.11.1 (deps/sqlite3, SQLite 3.53.2),
#     the same pin as interpreters/php/build.sh, with php's sqlite-patches/ applied.
#   - Toolchain: Debian clang-14, lld-14, wasi-libc, libclang-rt-dev-wasm32, binaryen
#     (optional), and the build Python /usr/bin/python3.11 (Debian's 3.11.2, the same version:
#     it runs the freezing steps of the cross build).
#   - Our changes: patches/*.patch (applied with patch -p1, no fuzz) and freeze_stdlib.py,
#     which marshals Lib/ into the C table main() installs as PyImport_FrozenModules.
# Intermediate files live in $WCGI_INTERPRETERS_DIR/build/ (downloads are reused).
set -euo pipefail

PY_VERSION=3.11.2
PY_DEB_VERSION=3.11.2-6+deb12u8
PY_ORIG_SHA256=2411c74bda5bbcfcddaf4531f66d1adc73f247f529aee981b029513aefdbf849
ZLIB_VERSION=1.2.13
ZLIB_DEB_VERSION=1:1.2.13.dfsg-1
ZLIB_ORIG_SHA256=71feb7947e3c00ef125f83b79a4e529bde31171e5babe48b391f06758d1ab0a1
BETTER_SQLITE3_VERSION=12.11.1
BETTER_SQLITE3_SHA256=ebf0ed75a7a59dbcb3b24bbd014ef49d9f15bc328e4adcbf516f2a8fadfa2835
BETTER_SQLITE3_INTEGRITY=sha512-dq9AtApgg5PGFtBzPFSBl3HZQjHok5gaQCM6zh2Yk0aSmDCs1CbnVI8/HgASQkNKsWFpseIO9beg5xxpYhbIfA==
BUILD_PYTHON="${BUILD_PYTHON:-/usr/bin/python3.11}"
JOBS="${JOBS:-2}"

HERE="$(cd "$(dirname "$0")" && pwd)"
SQLITE_PATCHES="$HERE/../php/sqlite-patches"
BASE="${WCGI_INTERPRETERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wcgi-interpreters}"
INPUT_HASH="$(cd "$HERE" && { echo build.sh; echo freeze_stdlib.py; find patches ../php/sqlite-patches -type f | LC_ALL=C sort; } \
    | while read -r f; do printf '%s\0' "$f"; cat "$f"; done | sha256sum | cut -c1-12)"
OUT="${1:-$BASE/python-$PY_VERSION-$INPUT_HASH}"

log() { echo "python: $*" >&2; }

complete() {
    [ -f "$1/python.wasm" ] && [ -f "$1/wasmer.toml" ] && [ -f "$1/.sha256" ] \
        && (cd "$1" && sha256sum --check --status .sha256)
}

if complete "$OUT"; then
    cmp -s "$HERE/README.md" "$OUT/README.md" || cp "$HERE/README.md" "$OUT/README.md"
    echo "$OUT"
    exit 0
fi

T0=$(date +%s)
NICE="nice -n 10"
W="$BASE/build"                      # shared: downloads, toolchain sysroot
B="$W/python-$PY_VERSION-$INPUT_HASH" # this input set's build tree
LOGS="$B/logs"
mkdir -p "$W/src" "$LOGS"

# Runs a step with its output in $LOGS/<name>.log; on failure shows the relevant lines.
run() {
    local name=$1; shift
    if ! "$@" > "$LOGS/$name.log" 2>&1; then
        log "step '$name' failed (full log: $LOGS/$name.log); relevant lines:"
        grep -E -i '(error|fatal|undefined|cannot|failed|hunk)' "$LOGS/$name.log" | grep -v -- '-Werror' | cut -c1-300 | head -40 >&2 || true
        echo "--- last lines ---" >&2
        tail -15 "$LOGS/$name.log" | cut -c1-300 >&2
        exit 1
    fi
}

# ------------------------------------------------------------------ toolchain
need_pkgs=()
command -v clang-14 >/dev/null || need_pkgs+=(clang-14)
command -v wasm-ld-14 >/dev/null || need_pkgs+=(lld-14)
command -v llvm-ar-14 >/dev/null || need_pkgs+=(llvm-14)
[ -f /usr/lib/wasm32-wasi/libc.a ] || need_pkgs+=(wasi-libc)
ls /usr/lib/llvm-14/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 || need_pkgs+=(libclang-rt-dev-wasm32)
command -v wasm-opt >/dev/null || need_pkgs+=(binaryen)
[ -x "$BUILD_PYTHON" ] || need_pkgs+=(python3.11)
for c in make patch bzip2:bzip2 npm:npm dpkg-source:dpkg-dev; do
    command -v "${c%%:*}" >/dev/null || need_pkgs+=("${c##*:}")
done
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need_pkgs+=(debian-archive-keyring)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing ${need_pkgs[*]}"
        apt-get update -qq >&2
        # binaryen is optional: try without it if it is not installable
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >&2 \
            || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]/binaryen/}" >&2
    else
        log "missing build tools: ${need_pkgs[*]} (run as root on Debian bookworm, or install them)"
        exit 1
    fi
fi
# The build Python must be this very version: it compiles and marshals the code that
# python.wasm unmarshals (bytecode and marshal format are fixed within 3.11.x only).
BUILD_PY_VERSION="$("$BUILD_PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
[ "${BUILD_PY_VERSION%.*}" = "${PY_VERSION%.*}" ] \
    || { log "$BUILD_PYTHON is $BUILD_PY_VERSION; a ${PY_VERSION%.*}.x build Python is needed (BUILD_PYTHON=...)"; exit 1; }

# Private sysroot: Debian's clang-14 for wasm32-wasi otherwise also searches the HOST's
# /usr/include, so a header wasi-libc lacks (netdb.h ...) would silently come from glibc.
SYSROOT="$W/sysroot"
mkdir -p "$SYSROOT/include" "$SYSROOT/lib"
ln -sfn /usr/include/wasm32-wasi "$SYSROOT/include/wasm32-wasi"
ln -sfn /usr/lib/wasm32-wasi "$SYSROOT/lib/wasm32-wasi"
CC_WASI="clang-14 --target=wasm32-wasi --sysroot=$SYSROOT"

# ------------------------------------------------------------------ sources (Debian)
sha_ok() { [ -f "$1" ] && echo "$2  $1" | sha256sum --check --status; }
ORIG="$W/src/python3.11_$PY_VERSION.orig.tar.gz"
ZORIG="$W/src/zlib_$ZLIB_VERSION.dfsg.orig.tar.bz2"
if ! sha_ok "$ORIG" "$PY_ORIG_SHA256" || ! sha_ok "$ZORIG" "$ZLIB_ORIG_SHA256"; then
    MIRROR="${DEBIAN_MIRROR:-$( (cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/{print $2}'; \
        awk '$1=="deb"{print $2}' /etc/apt/sources.list 2>/dev/null) | grep -v -- '-security' | grep -m1 -E '/debian/?$' || true)}"
    MIRROR="${MIRROR:-http://deb.debian.org/debian}"
    log "fetching python3.11=$PY_DEB_VERSION and zlib=$ZLIB_DEB_VERSION sources from $MIRROR (private deb-src list)"
    A="$W/apt"
    mkdir -p "$A/lists/partial" "$A/cache/archives/partial"
    # bookworm-security: the python3.11 revision pinned here is a security update.
    cat > "$A/python-src.sources" <<EOF
Types: deb-src
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    APT_OPTS=(-o "Dir::Etc::SourceList=$A/python-src.sources" -o "Dir::Etc::SourceParts=-"
              -o "Dir::State::Lists=$A/python-lists" -o "Dir::Cache=$A/cache" -o "APT::Sandbox::User=root")
    mkdir -p "$A/python-lists/partial"
    run apt-update apt-get "${APT_OPTS[@]}" update
    # apt verifies the .dsc, orig and debian tarballs against the signed Sources index.
    (cd "$W/src" && run apt-source apt-get "${APT_OPTS[@]}" source --download-only \
        "python3.11=$PY_DEB_VERSION" "zlib=$ZLIB_DEB_VERSION")
    grep -q "$PY_ORIG_SHA256" "$W/src/python3.11_$PY_DEB_VERSION.dsc" \
        || { log "the python3.11 .dsc does not list the pinned orig sha256"; exit 1; }
    grep -q "$ZLIB_ORIG_SHA256" "$W/src/zlib_${ZLIB_DEB_VERSION#*:}.dsc" \
        || { log "the zlib .dsc does not list the pinned orig sha256"; exit 1; }
    sha_ok "$ORIG" "$PY_ORIG_SHA256" || { log "$ORIG does not match its pinned sha256"; exit 1; }
    sha_ok "$ZORIG" "$ZLIB_ORIG_SHA256" || { log "$ZORIG does not match its pinned sha256"; exit 1; }
fi

# ------------------------------------------------------------------ SQLite (npm)
TGZ="$W/src/better-sqlite3-$BETTER_SQLITE3_VERSION.tgz"
if ! sha_ok "$TGZ" "$BETTER_SQLITE3_SHA256"; then
    log "fetching better-sqlite3@$BETTER_SQLITE3_VERSION from npm (SQLite amalgamation)"
    tmp="$(mktemp -d)"
    (cd "$tmp" && run npm-pack npm pack --silent "better-sqlite3@$BETTER_SQLITE3_VERSION")
    mv "$tmp/better-sqlite3-$BETTER_SQLITE3_VERSION.tgz" "$TGZ"; rm -rf "$tmp"
    sha_ok "$TGZ" "$BETTER_SQLITE3_SHA256" || { log "$TGZ does not match its pinned sha256"; exit 1; }
fi
"$BUILD_PYTHON" - "$TGZ" "$BETTER_SQLITE3_INTEGRITY" <<'EOF' || { log "npm integrity mismatch"; exit 1; }
import base64, hashlib, sys
algo, b64 = sys.argv[2].split("-", 1)
assert base64.b64encode(hashlib.new(algo, open(sys.argv[1], "rb").read()).digest()).decode() == b64
EOF

DEPS="$B/deps"
mkdir -p "$DEPS/include" "$DEPS/lib"
if [ ! -f "$DEPS/lib/libsqlite3.a" ]; then
    log "compiling SQLite (threadsafe=0, no extension loading)"
    rm -rf "$B/sqlite" && mkdir -p "$B/sqlite"
    tar xzf "$TGZ" -C "$B/sqlite" package/deps/sqlite3
    S="$B/sqlite/package/deps/sqlite3"
    for p in "$SQLITE_PATCHES"/*.patch; do
        if ! (cd "$S" && patch -p1 -F0 -N -s --no-backup-if-mismatch < "$p"); then
            log "patch $(basename "$p") does not apply cleanly to the SQLite amalgamation"
            exit 1
        fi
    done
    run sqlite $NICE $CC_WASI -O2 -D_WASI_EMULATED_GETPID -D_WASI_EMULATED_SIGNAL \
        -D_WASI_EMULATED_PROCESS_CLOCKS -D_WASI_EMULATED_MMAN \
        -DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION \
        -c "$S/sqlite3.c" -o "$B/sqlite/sqlite3.o"
    llvm-ar-14 rcs "$DEPS/lib/libsqlite3.a" "$B/sqlite/sqlite3.o"
    cp "$S/sqlite3.h" "$S/sqlite3ext.h" "$DEPS/include/"
fi

# ------------------------------------------------------------------ zlib
if [ ! -f "$DEPS/lib/libz.a" ]; then
    log "compiling zlib $ZLIB_VERSION"
    rm -rf "$B/zlib" && mkdir -p "$B/zlib"
    tar xjf "$ZORIG" -C "$B/zlib" --strip-components=1
    objs=()
    for c in adler32 compress crc32 deflate infback inffast inflate inftrees trees uncompr zutil \
             gzclose gzlib gzread gzwrite; do
        run "zlib-$c" $CC_WASI -O2 -DHAVE_UNISTD_H -DHAVE_STDARG_H -c "$B/zlib/$c.c" -o "$B/zlib/$c.o"
        objs+=("$B/zlib/$c.o")
    done
    llvm-ar-14 rcs "$DEPS/lib/libz.a" "${objs[@]}"
    cp "$B/zlib/zlib.h" "$B/zlib/zconf.h" "$DEPS/include/"
fi

# ------------------------------------------------------------------ CPython: unpack + patch
SRC="$B/cpython"
if [ ! -f "$SRC/.patched" ]; then
    log "unpacking Python-$PY_VERSION and applying patches/"
    rm -rf "$SRC" && mkdir -p "$SRC"
    tar xzf "$ORIG" -C "$SRC" --strip-components=1
    for p in "$HERE"/patches/*.patch; do
        # exact application only: no fuzz, no offsets tolerated silently
        if ! (cd "$SRC" && patch -p1 -F0 -N --dry-run -s < "$p" >/dev/null 2>&1); then
            log "patch $(basename "$p") does not apply cleanly to Python-$PY_VERSION:"
            (cd "$SRC" && patch -p1 -F0 -N --dry-run < "$p" >&2) || true
            exit 1
        fi
        (cd "$SRC" && patch -p1 -F0 -N -s --no-backup-if-mismatch < "$p")
    done
    touch "$SRC/.patched"
fi

# ------------------------------------------------------------------ CPython: configure
# Out of tree, as Tools/wasm/README.md does it (builddir/wasi), with its config.site.
BLD="$SRC/builddir/wasi"
if [ ! -f "$BLD/.configured" ]; then
    log "configure (--host=wasm32-unknown-wasi, build Python $BUILD_PYTHON $BUILD_PY_VERSION)"
    rm -rf "$BLD" && mkdir -p "$BLD"
    # No -O in CFLAGS/LDFLAGS: given -O at a link, clang-14 runs wasm-opt (if installed) on
    # the result, and binaryen 108 cannot parse the signature-mismatch stubs wasm-ld makes for
    # configure's `char f();` probes -- every AC_CHECK_FUNCS/AC_CHECK_LIB would come out "no".
    # The optimisation level is OPT (compile lines only); wasm-opt runs once, below.
    # The frozen stdlib archive is given in LIBS: only main() refers to its table, so it is
    # pulled into python.wasm alone (it is made after configure, before the link).
    (cd "$BLD" && run configure env \
        CONFIG_SITE="$SRC/Tools/wasm/config.site-wasm32-wasi" \
        CC="$CC_WASI" CPP="$CC_WASI -E" AR=llvm-ar-14 RANLIB=llvm-ranlib-14 READELF=true \
        CFLAGS="" OPT="-DNDEBUG -fwrapv -O2 -Wall" LDFLAGS="-Wl,--strip-debug" \
        PKG_CONFIG=false \
        ZLIB_CFLAGS="-I$DEPS/include" ZLIB_LIBS="-L$DEPS/lib -lz" \
        LIBSQLITE3_CFLAGS="-I$DEPS/include" LIBSQLITE3_LIBS="-L$DEPS/lib -lsqlite3" \
        $NICE ../../configure -C --host=wasm32-unknown-wasi --build="$(../../config.guess)" \
        --with-build-python="$BUILD_PYTHON" --disable-test-modules --without-ensurepip)
    for m in ZLIB _SQLITE3 _SHA256 _MD5 _BLAKE2 _JSON _DECIMAL PYEXPAT; do
        grep -q "^MODULE_${m}_STATE=yes" "$BLD/Makefile" \
            || { log "configure does not build module $m: $(grep "^MODULE_${m}_STATE" "$BLD/Makefile")"; exit 1; }
    done
    touch "$BLD/.configured"
fi

# ------------------------------------------------------------------ CPython: make
log "make (-j$JOBS; takes a few minutes, log: $LOGS/make.log)"
(cd "$BLD" && run make-libs $NICE make -j"$JOBS" libpython3.11.a Programs/python.o pybuilddir.txt)

# The standard library, frozen: Lib/ (less tests, GUI, ensurepip ...) and the build's
# _sysconfigdata module, marshalled by the build Python into one C table.
FROZEN="$B/frozen"
if [ ! -f "$FROZEN/libwcgi_frozen_stdlib.a" ]; then
    log "freezing the standard library"
    rm -rf "$FROZEN" && mkdir -p "$FROZEN/extra"
    cp "$BLD/$(cat "$BLD/pybuilddir.txt")"/_sysconfigdata_*.py "$FROZEN/extra/"
    run freeze "$BUILD_PYTHON" "$HERE/freeze_stdlib.py" "$SRC/Lib" "$FROZEN/extra" \
        "$SRC/Python/frozen.c" "$FROZEN/frozen_stdlib.c" "$FROZEN/modules.txt"
    run frozen-cc $NICE $CC_WASI -O0 -I"$SRC/Include" -I"$BLD" -c "$FROZEN/frozen_stdlib.c" \
        -o "$FROZEN/frozen_stdlib.o"
    llvm-ar-14 rcs "$FROZEN/libwcgi_frozen_stdlib.a" "$FROZEN/frozen_stdlib.o"
fi
sed -i "s|^LIBS=\(.*\)$|LIBS=\1 -L$FROZEN -lwcgi_frozen_stdlib|" "$BLD/Makefile"
grep -q -- "-lwcgi_frozen_stdlib" "$BLD/Makefile" || { log "could not add the frozen stdlib to LIBS"; exit 1; }
# CONFIGURE_LDFLAGS_NODIST as configure sets it for WASI (512 KiB stack placed first, so that an
# overflow traps instead of running into the static data) without its --initial-memory=10 MiB,
# which the frozen stdlib (~11 MB of static data) does not fit in: wasm-ld then makes the
# initial memory as large as the data and stack need.
(cd "$BLD" && run make $NICE make -j"$JOBS" python.wasm \
    CONFIGURE_LDFLAGS_NODIST="-z stack-size=524288 -Wl,--stack-first")

RAW="$BLD/python.wasm"
MOD="$B/python.wasm"
if command -v wasm-opt >/dev/null; then
    log "wasm-opt -O2"
    if ! $NICE wasm-opt -O2 --strip-debug --strip-producers "$RAW" -o "$MOD" 2> "$LOGS/wasm-opt.log"; then
        log "wasm-opt failed (see $LOGS/wasm-opt.log); using the unoptimised module"
        cp "$RAW" "$MOD"
    fi
else
    log "wasm-opt (binaryen) not available; skipping that optional step"
    cp "$RAW" "$MOD"
fi

# A WASI command: exports _start, imports only wasi_snapshot_preview1.
"$BUILD_PYTHON" - "$MOD" <<'EOF' || { log "module check failed"; exit 1; }
import sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\0asm\1\0\0\0", "not a wasm module"
def uleb(b, i):
    r = s = 0
    while True:
        x = b[i]; i += 1; r |= (x & 0x7f) << s; s += 7
        if x < 0x80: return r, i
def name(b, i):
    n, i = uleb(b, i); return b[i:i+n].decode(), i + n
i, imports, exports = 8, set(), set()
while i < len(data):
    sid = data[i]; size, j = uleb(data, i + 1); end = j + size
    if sid in (2, 7):
        cnt, j = uleb(data, j)
        for _ in range(cnt):
            if sid == 2:
                mod, j = name(data, j); _, j = name(data, j); kind = data[j]; j += 1
                if kind == 0: _, j = uleb(data, j)
                elif kind == 1: j += 1; fl, j = uleb(data, j); _, j = uleb(data, j); j = uleb(data, j)[1] if fl & 1 else j
                elif kind == 2: fl, j = uleb(data, j); _, j = uleb(data, j); j = uleb(data, j)[1] if fl & 1 else j
                elif kind == 3: j += 2
                imports.add(mod)
            else:
                nm, j = name(data, j); j += 1; _, j = uleb(data, j); exports.add(nm)
    i = end
assert imports == {"wasi_snapshot_preview1"}, f"unexpected import modules: {imports}"
for e in ("_start", "memory"):
    assert e in exports, f"no {e} export (exports: {sorted(exports)})"
EOF

# ------------------------------------------------------------------ package
staging="$OUT.partial.$$"
rm -rf "$staging"
mkdir -p "$staging/LICENSES"
cp "$MOD" "$staging/python.wasm"
cat > "$staging/wasmer.toml" <<EOF
# The CPython interpreter as a wcgi package: templates depend on it as "wcgi/python".
[package]
name = "wcgi/python"
version = "$PY_VERSION"
description = "CPython $PY_VERSION for WASI (standard library frozen in; zlib, sqlite3 $(grep -m1 '^#define SQLITE_VERSION ' "$DEPS/include/sqlite3.h" | awk '{print $3}' | tr -d '"'), builtin hashes, decimal, expat), for wcgi apps"
license = "PSF-2.0"

[[module]]
name = "python"
source = "python.wasm"
abi = "wasi"

[[command]]
name = "python"
module = "python"
runner = "wasi"
EOF
cp "$HERE/README.md" "$staging/README.md"
cp "$FROZEN/modules.txt" "$staging/FROZEN-MODULES.txt"
cp "$SRC/LICENSE" "$staging/LICENSES/Python-LICENSE"
# CPython's licence page, with the licences of the code it bundles (expat, libmpdec, the
# hash implementations ...).
cp "$SRC/Doc/license.rst" "$staging/LICENSES/Python-license.rst"
# zlib's licence is the comment that opens zlib.h.
sed -n '1,/\*\//p' "$B/zlib/zlib.h" > "$staging/LICENSES/zlib-LICENSE"
grep -q "Jean-loup Gailly and Mark Adler" "$staging/LICENSES/zlib-LICENSE" || { log "could not write the zlib licence"; exit 1; }
{
    echo "SQLite $(grep -m1 '^#define SQLITE_VERSION ' "$DEPS/include/sqlite3.h" | awk '{print $3}' | tr -d '"'), compiled into python.wasm"
    echo "from the amalgamation shipped in npm better-sqlite3@$BETTER_SQLITE3_VERSION (deps/sqlite3)."
    echo "SQLite is in the public domain; the notice from its source:"
    echo
    sed -n '/The author disclaims copyright/,/^\*\*\*\*\*\*\*\*\*\*\*\*\*/{p;/^\*\*\*\*\*/q}' "$B/sqlite/package/deps/sqlite3/sqlite3.c"
} > "$staging/LICENSES/SQLite-PUBLIC-DOMAIN"
[ -s "$staging/LICENSES/SQLite-PUBLIC-DOMAIN" ] || { log "could not write the SQLite notice"; exit 1; }
cat > "$staging/LICENSES/WASI-CHANGES" <<EOF
python.wasm is CPython $PY_VERSION (Debian source package python3.11=$PY_DEB_VERSION, upstream
tarball unmodified) built for wasm32-wasi with the wcgi project's changes: the patches in
interpreters/python/patches/ and the frozen standard library made by
interpreters/python/freeze_stdlib.py (inputs hash $INPUT_HASH); SQLite with the change in
interpreters/php/sqlite-patches/. Those changes are part of the wcgi project and are offered
under the licence of the files they modify (PSF License 2.0; SQLite's public-domain
dedication). It statically links zlib $ZLIB_VERSION (zlib licence), wasi-libc (MIT /
Apache-2.0 / BSD-style: wasi-libc-copyright) and compiler-rt builtins (Apache-2.0 WITH
LLVM-exception: compiler-rt-copyright), from Debian.
EOF
for pkg in wasi-libc:wasi-libc libclang-rt-dev-wasm32:compiler-rt; do
    doc="/usr/share/doc/${pkg%%:*}/copyright"
    [ -f "$doc" ] || { log "missing $doc (its licence must travel with the module)"; exit 1; }
    cp "$doc" "$staging/LICENSES/${pkg##*:}-copyright"
done
(cd "$staging" && sha256sum python.wasm > .sha256)
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
mv "$staging" "$OUT"

# The build tree is only needed to make OUT, which is reused from now on; build trees of
# other input sets are stale. Downloads in $W/src stay for the next build.
[ -n "${KEEP_BUILD_TREE:-}" ] || find "$W" -mindepth 1 -maxdepth 1 -name 'python-*' -type d -exec rm -rf {} +

T1=$(date +%s)
log "built in $((T1 - T0)) s; python.wasm is $(stat -c %s "$OUT/python.wasm") bytes ($(( $(stat -c %s "$OUT/python.wasm") / 1024 / 1024 )) MiB)"
echo "$OUT"

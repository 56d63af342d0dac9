#!/usr/bin/env bash
# Builds php-cgi 8.2.32 for wasm32-wasi (WASI preview 1) and lays it out as a wcgi
# interpreter package (wasmer.toml + php-cgi.wasm + README + licences) in OUT.
#
# Usage: interpreters/php/build.sh [OUT]
#   OUT defaults to $WCGI_INTERPRETERS_DIR/php-8.2.32-<hash> (~/.cache/wcgi-interpreters/...),
#   <hash> = 12 hex of a sha256 over this script and every file in wasi/, patches/ and sqlite-patches/, so any
#   change to the build inputs gives a new OUT and an unchanged tree reuses the cached one.
# Prints OUT on stdout; messages go to stderr. A complete, verified OUT is reused at once.
#
# Inputs (all pinned):
#   - PHP: Debian bookworm source package php8.2=8.2.32-1~deb12u1 (apt-get source through a
#     private deb-src list; apt checks the files against the signed Sources index, and the
#     orig tarball is also pinned below). Only the pristine upstream tarball is used.
#   - SQLite: the amalgamation in npm better-sqlite3@12.11.1 (deps/sqlite3, SQLite 3.53.2);
#     Debian bookworm's 3.40 predates SQLite's WASI support.
#   - Toolchain: Debian clang-14, lld-14, wasi-libc, libclang-rt-dev-wasm32, binaryen (optional),
#     and a host php (php8.2-cli) to run PHP's own VM generator (see "regenerate the VM").
#   - Our changes: patches/*.patch (applied with patch -p1, no fuzz) to PHP,
#     sqlite-patches/*.patch to the SQLite amalgamation, and the compat layer in
#     wasi/ (force-included header + headers wasi-libc lacks + ENOSYS stub library).
# Intermediate files live in $WCGI_INTERPRETERS_DIR/build/ (downloads are reused).
set -euo pipefail

PHP_VERSION=8.2.32
PHP_DEB_VERSION=8.2.32-1~deb12u1
PHP_ORIG_SHA256=e02aa173c236c12791696254d607da680e6d5516f8f5c2339642de7c4f944bd2
BETTER_SQLITE3_VERSION=12.11.1
BETTER_SQLITE3_SHA256=ebf0ed75a7a59dbcb3b24bbd014ef49d9f15bc328e4adcbf516f2a8fadfa2835
BETTER_SQLITE3_INTEGRITY=sha512-dq9AtApgg5PGFtBzPFSBl3HZQjHok5gaQCM6zh2Yk0aSmDCs1CbnVI8/HgASQkNKsWFpseIO9beg5xxpYhbIfA==
JOBS="${JOBS:-2}"
STACK_SIZE=8388608                    # bytes of shadow stack (linear memory) for C code

HERE="$(cd "$(dirname "$0")" && pwd)"
BASE="${WCGI_INTERPRETERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wcgi-interpreters}"
INPUT_HASH="$(cd "$HERE" && { echo build.sh; find wasi patches sqlite-patches -type f | LC_ALL=C sort; } \
    | while read -r f; do printf '%s\0' "$f"; cat "$f"; done | sha256sum | cut -c1-12)"
OUT="${1:-$BASE/php-$PHP_VERSION-$INPUT_HASH}"

log() { echo "php: $*" >&2; }

complete() {
    [ -f "$1/php-cgi.wasm" ] && [ -f "$1/wasmer.toml" ] && [ -f "$1/.sha256" ] \
        && (cd "$1" && sha256sum --check --status .sha256)
}

if complete "$OUT"; then
    cmp -s "$HERE/README.md" "$OUT/README.md" || cp "$HERE/README.md" "$OUT/README.md"
    echo "$OUT"
    exit 0
fi

T0=$(date +%s)
NICE="nice -n 10"
W="$BASE/build"                       # shared: downloads, toolchain sysroot
B="$W/php-$PHP_VERSION-$INPUT_HASH"   # this input set's build tree
LOGS="$B/logs"
mkdir -p "$W/src" "$LOGS"

# Runs a step with its output in $LOGS/<name>.log; on failure shows the relevant lines.
run() {
    local name=$1; shift
    if ! "$@" > "$LOGS/$name.log" 2>&1; then
        log "step '$name' failed (full log: $LOGS/$name.log); relevant lines:"
        grep -E -i '(error|fatal|undefined|cannot|failed|hunk)' "$LOGS/$name.log" | grep -v -- '-Werror' | head -40 >&2 || true
        echo "--- last lines ---" >&2
        tail -15 "$LOGS/$name.log" >&2
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
command -v php >/dev/null || need_pkgs+=(php8.2-cli)
for c in make patch xz:xz-utils python3 npm:npm dpkg-source:dpkg-dev; do
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

# Private sysroot: Debian's clang-14 for wasm32-wasi otherwise also searches the HOST's
# /usr/include, so a header wasi-libc lacks (netdb.h ...) would silently come from glibc.
SYSROOT="$W/sysroot"
mkdir -p "$SYSROOT/include" "$SYSROOT/lib"
ln -sfn /usr/include/wasm32-wasi "$SYSROOT/include/wasm32-wasi"
ln -sfn /usr/lib/wasm32-wasi "$SYSROOT/lib/wasm32-wasi"
CC_WASI="clang-14 --target=wasm32-wasi --sysroot=$SYSROOT"
WASI_DEFS="-D_WASI_EMULATED_GETPID -D_WASI_EMULATED_SIGNAL -D_WASI_EMULATED_PROCESS_CLOCKS -D_WASI_EMULATED_MMAN"
WASI_LIBS="-lwasi-emulated-getpid -lwasi-emulated-signal -lwasi-emulated-process-clocks -lwasi-emulated-mman"

# ------------------------------------------------------------------ PHP source (Debian)
ORIG="$W/src/php8.2_$PHP_VERSION.orig.tar.xz"
sha_ok() { [ -f "$1" ] && echo "$2  $1" | sha256sum --check --status; }
if ! sha_ok "$ORIG" "$PHP_ORIG_SHA256"; then
    MIRROR="${DEBIAN_MIRROR:-$( (cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/{print $2}'; \
        awk '$1=="deb"{print $2}' /etc/apt/sources.list 2>/dev/null) | grep -v -- '-security' | grep -m1 -E '/debian/?$' || true)}"
    MIRROR="${MIRROR:-http://deb.debian.org/debian}"
    log "fetching php8.2=$PHP_DEB_VERSION source from $MIRROR (private deb-src list)"
    A="$W/apt"
    mkdir -p "$A/lists/partial" "$A/cache/archives/partial"
    cat > "$A/src.sources" <<EOF
Types: deb-src
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    APT_OPTS=(-o "Dir::Etc::SourceList=$A/src.sources" -o "Dir::Etc::SourceParts=-"
              -o "Dir::State::Lists=$A/lists" -o "Dir::Cache=$A/cache" -o "APT::Sandbox::User=root")
    run apt-update apt-get "${APT_OPTS[@]}" update
    # apt verifies the .dsc, orig and debian tarballs against the signed Sources index.
    (cd "$W/src" && run apt-source apt-get "${APT_OPTS[@]}" source --download-only "php8.2=$PHP_DEB_VERSION")
    grep -q "$PHP_ORIG_SHA256" "$W/src/php8.2_$PHP_DEB_VERSION.dsc" \
        || { log "the .dsc does not list the pinned orig sha256"; exit 1; }
    sha_ok "$ORIG" "$PHP_ORIG_SHA256" || { log "$ORIG does not match its pinned sha256"; exit 1; }
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
python3 - "$TGZ" "$BETTER_SQLITE3_INTEGRITY" <<'EOF' || { log "npm integrity mismatch"; exit 1; }
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
    for p in "$HERE"/sqlite-patches/*.patch; do
        if ! (cd "$S" && patch -p1 -F0 -N -s --no-backup-if-mismatch < "$p"); then
            log "patch $(basename "$p") does not apply cleanly to the SQLite amalgamation"
            exit 1
        fi
    done
    run sqlite $NICE $CC_WASI -O2 $WASI_DEFS -DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION \
        -c "$S/sqlite3.c" -o "$B/sqlite/sqlite3.o"
    llvm-ar-14 rcs "$DEPS/lib/libsqlite3.a" "$B/sqlite/sqlite3.o"
    cp "$S/sqlite3.h" "$S/sqlite3ext.h" "$DEPS/include/"
fi

# ------------------------------------------------------------------ compat stub library
run stubs $CC_WASI -O2 -Wall -I"$HERE/wasi/include" -c "$HERE/wasi/wasi_stubs.c" -o "$DEPS/wasi_stubs.o"
run bulk-memory $CC_WASI -O2 -Wall -mbulk-memory -fno-builtin -c "$HERE/wasi/bulk_memory.c" \
    -o "$DEPS/bulk_memory.o"
rm -f "$DEPS/lib/libwcgi_wasi_stubs.a"
llvm-ar-14 rcs "$DEPS/lib/libwcgi_wasi_stubs.a" "$DEPS/wasi_stubs.o" "$DEPS/bulk_memory.o"

# ------------------------------------------------------------------ PHP: unpack + patch
SRC="$B/php-src"
if [ ! -f "$SRC/.patched" ]; then
    log "unpacking php-$PHP_VERSION and applying patches/"
    rm -rf "$SRC" && mkdir -p "$SRC"
    tar xJf "$ORIG" -C "$SRC" --strip-components=1
    for p in "$HERE"/patches/*.patch; do
        # exact application only: no fuzz, no offsets tolerated silently
        if ! (cd "$SRC" && patch -p1 -F0 -N --dry-run -s < "$p" >/dev/null 2>&1); then
            log "patch $(basename "$p") does not apply cleanly to php-$PHP_VERSION:"
            (cd "$SRC" && patch -p1 -F0 -N --dry-run < "$p" >&2) || true
            exit 1
        fi
        (cd "$SRC" && patch -p1 -F0 -N -s --no-backup-if-mismatch < "$p")
    done
    touch "$SRC/.patched"
fi

# ------------------------------------------------------------------ PHP: regenerate the VM
# PHP's VM runs each opcode through a handler. Without computed goto (wasm has none) it
# defaults to the CALL kind: one function per handler, reached through a `call_indirect` per
# opcode, with its table bounds and signature checks: the hottest spot of a WordPress request.
# The SWITCH kind puts every handler in one function behind a `switch` (a wasm `br_table`):
# WordPress's front page costs 0.79x the CPU (interleaved A/B, Cranelift). PHP's generator
# writes Zend/zend_vm_execute.h, zend_vm_opcodes.{h,c} and zend_vm_handlers.h from
# zend_vm_def.h, none of which patches/ touch; any host php runs it (it only reads and writes
# text: run without options it reproduces the shipped files byte for byte).
if [ ! -f "$SRC/.vm-switch" ]; then
    log "regenerating the Zend VM as the SWITCH kind (host php $(php -n -r 'echo PHP_VERSION;'))"
    (cd "$SRC/Zend" && run vm-gen php -n zend_vm_gen.php --with-vm-kind=SWITCH)
    grep -Eq '^#[[:space:]]*define[[:space:]]+ZEND_VM_KIND[[:space:]]+ZEND_VM_KIND_SWITCH[[:space:]]*$' \
        "$SRC/Zend/zend_vm_opcodes.h" || { log "the regenerated VM is not of the SWITCH kind"; exit 1; }
    touch "$SRC/.vm-switch"
fi

# ------------------------------------------------------------------ PHP: configure
if [ ! -f "$SRC/.configured" ]; then
    log "configure"
    # The compat layer is added only at make time (EXTRA_CFLAGS), so configure's checks see the
    # real wasi-libc. Cache variables: mkstemp is provided by our stub library; fork() exists
    # there too (failing with ENOSYS) so that proc_open() & co. are defined and fail at run
    # time instead of being undefined functions.
    (cd "$SRC" && run configure env \
        CC="$CC_WASI" AR=llvm-ar-14 RANLIB=llvm-ranlib-14 NM=llvm-nm-14 STRIP=llvm-strip-14 \
        CFLAGS="-O2 $WASI_DEFS -D_GNU_SOURCE" \
        LDFLAGS="-Wl,-z,stack-size=$STACK_SIZE" LIBS="$WASI_LIBS" \
        SQLITE_CFLAGS="-I$DEPS/include" SQLITE_LIBS="-L$DEPS/lib -lsqlite3" \
        ac_cv_func_mkstemp=yes ac_cv_func_fork=yes \
        $NICE ./configure --host=wasm32-wasi \
        --disable-all --enable-cgi --disable-cli --disable-phpdbg --disable-fpm \
        --without-iconv --without-openssl --without-pear --disable-phar \
        --enable-opcache --disable-opcache-jit --disable-huge-code-pages \
        --disable-zend-signals --without-pcre-jit \
        --disable-fiber-asm --without-valgrind --without-libxml \
        --enable-ctype --enable-filter --enable-tokenizer --enable-session \
        --with-sqlite3 --enable-pdo --with-pdo-sqlite \
        --enable-mbstring --disable-mbregex --enable-bcmath --enable-calendar --enable-fileinfo)
    for d in HAVE_MKSTEMP HAVE_FORK PHP_CAN_SUPPORT_PROC_OPEN ZEND_OPCACHE_STATIC; do
        grep -q "^#define $d 1" "$SRC/main/php_config.h" || { log "configure did not define $d"; exit 1; }
    done
    # libtool links php-cgi with -export-dynamic, which makes wasm-ld export ~2300 internal
    # symbols (bigger module, no dead-code elimination). A WASI command exports only _start
    # (and php-cgi its pre-initialisation entry points, which say so in the source).
    sed -i '/^BUILD_CGI = /s/ -export-dynamic / /' "$SRC/Makefile"
    ! grep -q '^BUILD_CGI = .*-export-dynamic' "$SRC/Makefile" || { log "could not drop -export-dynamic"; exit 1; }
    touch "$SRC/.configured"
fi

# ------------------------------------------------------------------ PHP: make
log "make cgi (-j$JOBS; takes a few minutes, log: $LOGS/make.log)"
# PHP_RPATHS= : configure turns -L dirs into -R/--rpath, which wasm-ld rejects.
# --strip-debug: wasi-libc.a carries DWARF (~0.4 MB). (clang-14 also runs wasm-opt at the link
# when binaryen is installed, which drops the name section.)
# The stack size goes here, on the link line: PHP's configure does not pass LDFLAGS on to it
# (without this the shadow stack is wasm-ld's default 64 KiB, and OPcache's optimizer, whose
# alloca()s take up to 32 KiB each, runs over it into the static data).
(cd "$SRC" && run make $NICE make -j"$JOBS" \
    EXTRA_CFLAGS="-include $HERE/wasi/wasi_compat.h -I$HERE/wasi/include" \
    ZEND_EXTRA_LIBS="-L$DEPS/lib -lwcgi_wasi_stubs -Wl,--strip-debug -Wl,-z,stack-size=$STACK_SIZE" \
    PHP_RPATHS= cgi)

RAW="$SRC/sapi/cgi/php-cgi"
MOD="$B/php-cgi.wasm"
if command -v wasm-opt >/dev/null; then
    log "wasm-opt -O2"
    if ! $NICE wasm-opt -O2 --strip-producers "$RAW" -o "$MOD" 2> "$LOGS/wasm-opt.log"; then
        log "wasm-opt failed (see $LOGS/wasm-opt.log); using the unoptimised module"
        cp "$RAW" "$MOD"
    fi
else
    log "wasm-opt (binaryen) not available; skipping that optional step"
    cp "$RAW" "$MOD"
fi

# A WASI command: exports _start and the pre-initialisation entry points (Wizer's convention:
# wizer.initialize, wizer.resume; patch 0010), imports only wasi_snapshot_preview1, and has
# the stack it was linked with (between the static data and the initial stack pointer).
python3 - "$MOD" "$STACK_SIZE" <<'EOF' || { log "module check failed"; exit 1; }
import sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\0asm\1\0\0\0", "not a wasm module"
def uleb(b, i):
    r = s = 0
    while True:
        x = b[i]; i += 1; r |= (x & 0x7f) << s; s += 7
        if x < 0x80: return r, i
def sleb(b, i):
    r = s = 0
    while True:
        x = b[i]; i += 1; r |= (x & 0x7f) << s; s += 7
        if x < 0x80: return (r - (1 << s) if x & 0x40 else r), i
def name(b, i):
    n, i = uleb(b, i); return b[i:i+n].decode(), i + n
i, imports, exports, sp, data_end = 8, set(), set(), None, 0
while i < len(data):
    sid = data[i]; size, j = uleb(data, i + 1); end = j + size
    if sid == 6 and sp is None:  # the first global is __stack_pointer (i32, mutable, i32.const)
        _, k = uleb(data, j)
        if data[k] == 0x7f and data[k + 2] == 0x41: sp = sleb(data, k + 3)[0]
    if sid == 11:
        cnt, k = uleb(data, j)
        for _ in range(cnt):
            flags, k = uleb(data, k)
            if flags == 2: _, k = uleb(data, k)
            if flags in (0, 2):
                assert data[k] == 0x41; off, k = sleb(data, k + 1); k += 1
            else: off = 0
            n, k = uleb(data, k); data_end = max(data_end, off + n); k += n
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
for e in ("_start", "wizer.initialize", "wizer.resume", "memory"):
    assert e in exports, f"no {e} export (exports: {sorted(exports)})"
assert sp is not None and sp - data_end >= int(sys.argv[2]), \
    f"stack smaller than {sys.argv[2]} bytes (stack pointer {sp:#x}, data ends at {data_end:#x})"
EOF

# ------------------------------------------------------------------ package
staging="$OUT.partial.$$"
rm -rf "$staging"
mkdir -p "$staging/LICENSES"
cp "$MOD" "$staging/php-cgi.wasm"
cat > "$staging/wasmer.toml" <<EOF
# The PHP interpreter (php-cgi) as a wcgi package: PHP apps depend on it as "wcgi/php".
[package]
name = "wcgi/php"
version = "$PHP_VERSION"
description = "php-cgi $PHP_VERSION for WASI (Core, standard, date, pcre, hash, json, random, spl, reflection, ctype, filter, tokenizer, session, mbstring, bcmath, calendar, fileinfo, sqlite3, pdo, pdo_sqlite, Zend OPcache), pre-initialisable, for wcgi apps"
license = "PHP-3.01"

[[module]]
name = "php-cgi"
source = "php-cgi.wasm"
abi = "wasi"

[[command]]
name = "php-cgi"
module = "php-cgi"
runner = "wasi"
EOF
cp "$HERE/README.md" "$staging/README.md"
cp "$SRC/LICENSE" "$staging/LICENSES/PHP-LICENSE"
cp "$SRC/Zend/LICENSE" "$staging/LICENSES/Zend-LICENSE"
{
    echo "SQLite $(grep -m1 '^#define SQLITE_VERSION ' "$DEPS/include/sqlite3.h" | awk '{print $3}' | tr -d '"'), compiled into php-cgi.wasm"
    echo "from the amalgamation shipped in npm better-sqlite3@$BETTER_SQLITE3_VERSION (deps/sqlite3)."
    echo "SQLite is in the public domain; the notice from its source:"
    echo
    # the first copy of the dedication in the amalgamation (it repeats per source file)
    sed -n '/The author disclaims copyright/,/^\*\*\*\*\*\*\*\*\*\*\*\*\*/{p;/^\*\*\*\*\*/q}' "$B/sqlite/package/deps/sqlite3/sqlite3.c"
} > "$staging/LICENSES/SQLite-PUBLIC-DOMAIN"
[ -s "$staging/LICENSES/SQLite-PUBLIC-DOMAIN" ] || { log "could not write the SQLite notice"; exit 1; }
cat > "$staging/LICENSES/WASI-CHANGES" <<EOF
php-cgi.wasm is PHP $PHP_VERSION (Debian source package php8.2=$PHP_DEB_VERSION, upstream
tarball unmodified) built with the wcgi project's own WASI port: the patches in
interpreters/php/patches/, the change to SQLite in interpreters/php/sqlite-patches/ and the
compat layer in interpreters/php/wasi/ of the wcgi repository (inputs hash $INPUT_HASH).
Those changes are part of the wcgi project and are offered under the licence of the files
they modify (PHP License 3.01 / Zend Engine License 2.00; SQLite's public-domain dedication).
It statically links wasi-libc (MIT / Apache-2.0 / BSD-style: wasi-libc-copyright) and
compiler-rt builtins (Apache-2.0 WITH LLVM-exception: compiler-rt-copyright), from Debian.
EOF
# The copyright files of the libraries linked in, as Debian ships them.
for pkg in wasi-libc:wasi-libc libclang-rt-dev-wasm32:compiler-rt; do
    doc="/usr/share/doc/${pkg%%:*}/copyright"
    [ -f "$doc" ] || { log "missing $doc (its licence must travel with the module)"; exit 1; }
    cp "$doc" "$staging/LICENSES/${pkg##*:}-copyright"
done
(cd "$staging" && sha256sum php-cgi.wasm > .sha256)
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
mv "$staging" "$OUT"

# The build tree (~250 MB) is only needed to make OUT, which is reused from now on; build
# trees of other input sets are stale. Downloads in $W/src stay for the next build.
find "$W" -mindepth 1 -maxdepth 1 -name 'php-*' -type d -exec rm -rf {} +

T1=$(date +%s)
log "built in $((T1 - T0)) s; php-cgi.wasm is $(stat -c %s "$OUT/php-cgi.wasm") bytes ($(( $(stat -c %s "$OUT/php-cgi.wasm") / 1024 / 1024 )) MiB)"
echo "$OUT"

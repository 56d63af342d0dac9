#!/usr/bin/env bash
# Assembles the WordPress example next to this script:
#   site/          the docroot (guest /app): unmodified WordPress 6.8.12 + SQLite plugin
#   data/          the writable database directory (guest /data, given with --mapdir)
#   php-cgi.wasm   the interpreter built by interpreters/php/build.sh
# Every input is pinned and checked against the sha256 below. Downloads are cached in
# $WCGI_EXAMPLES_CACHE/wordpress (default ~/.cache/wcgi-examples), so later runs need no network.
# Usage: examples/wordpress/setup.sh   (no arguments; prints the site path on stdout)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${WCGI_EXAMPLES_CACHE:-$HOME/.cache/wcgi-examples}/wordpress"

# Debian trixie, arch all. The library packages are there because wordpress's .deb replaces
# bundled files (getID3, underscore, lodash, cropper) by symlinks into them.
DEBS=(
  "wordpress 6.8.12+dfsg1-0+deb13u1 d398d413b9f95695a9bf57a6a5830cc6f8c5ac42b4151015ffbd6d6756266a8d"
  "wordpress-theme-twentytwentyfive 6.8.12+dfsg1-0+deb13u1 2e0676de0a4c075c41e7947ac645b3683bed0ef00f48f7d2af98876efa6b2eb8"
  "php-getid3 1.9.23+dfsg-1 513a710dfbc50f595be48e5bc68e9ae5c4850f08a792aafc0991f126b9d2635e"
  "libjs-underscore 1.13.4~dfsg+~1.11.4-3 4a0fbc90e7f62ea50c4ac7453352721fa60bb5eac87e9f39a027908faff29015"
  "libjs-lodash 4.17.21+dfsg+~cs8.31.198.20210220-9+deb13u1 3ab11001abf36a57765180205aa6ff69bfb11ee6229fb89e3b60ae3e97bfbbee"
  "libjs-cropper 1.2.2-2 933ad4a9b49c4ef9fff4d6cb25400c7a5d3c83b8447f6374c00371c3fa851d63"
)
# The SQLite Database Integration plugin (3.0.2) ships as a zip inside this npm package.
PLAYGROUND_TGZ=wp-playground-cli-3.1.56.tgz
PLAYGROUND_SHA256=7cba7021c70a824d309f8d3bcbf6f9250c44795445b5d2883baa763a63482a7c

log() { echo "wordpress: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Missing tools are installed only when we are root; otherwise say which package to install.
command -v apt-get >/dev/null || die "needs apt-get (a Debian-based system)"
apt_updated=
need() {
    command -v "$1" >/dev/null && return
    [ "$(id -u)" = 0 ] || die "needs $1: install the Debian package $2"
    [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
    log "installing $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >&2
}
need dpkg-deb dpkg
need npm npm
need unzip unzip

mkdir -p "$CACHE/debs"
deb_file() { echo "$CACHE/debs/${1}_${2}_all.deb"; }
# Drops cached files whose sha256 is wrong (a partial or tampered download), so they are fetched again.
check() { # file sha256
    [ -f "$1" ] || return 1
    echo "$2  $1" | sha256sum --check --status && return 0
    log "sha256 mismatch, removing $1"; rm -f "$1"; return 1
}

missing=()
for entry in "${DEBS[@]}"; do
    read -r pkg ver sum <<<"$entry"
    check "$(deb_file "$pkg" "$ver")" "$sum" || missing+=("$pkg=$ver")
done

if [ ${#missing[@]} -gt 0 ]; then
    # The mirror comes from the machine's own apt config (it may be a local proxy).
    mirror="${DEBIAN_MIRROR:-$( { cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/{print $2}'
        awk '$1=="deb"{print $2}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null; } \
        | grep -v -- '-security' | grep -m1 -E '/debian/?$' || true)}"
    mirror="${mirror:-http://deb.debian.org/debian}"
    # A private apt setup: own sources, lists and cache; the system's apt state is not touched.
    # Once trixie's next point release replaces these versions, point DEBIAN_MIRROR at a
    # snapshot.debian.org date that still has them (Valid-Until is ignored for that reason).
    mkdir -p "$CACHE/apt/lists/partial" "$CACHE/apt/cache/archives/partial"
    cat >"$CACHE/apt/trixie.sources" <<EOS
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Targets: Packages
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
    A=(-o "Dir::Etc::SourceList=$CACHE/apt/trixie.sources" -o "Dir::Etc::SourceParts=-"
       -o "Dir::State::Lists=$CACHE/apt/lists" -o "Dir::Cache=$CACHE/apt/cache"
       -o "Dir::State::Status=/dev/null" -o "Acquire::Check-Valid-Until=false"
       -o "APT::Sandbox::User=$(id -un)")
    [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] \
        || die "needs /usr/share/keyrings/debian-archive-keyring.gpg (Debian package debian-archive-keyring)"
    log "downloading ${missing[*]} from $mirror (trixie)"
    apt-get "${A[@]}" update -qq
    (cd "$CACHE/debs" && apt-get "${A[@]}" download -q "${missing[@]}" >&2)
    for entry in "${DEBS[@]}"; do
        read -r pkg ver sum <<<"$entry"
        check "$(deb_file "$pkg" "$ver")" "$sum" || die "$pkg $ver: download failed or sha256 mismatch"
    done
fi

if ! check "$CACHE/$PLAYGROUND_TGZ" "$PLAYGROUND_SHA256"; then
    log "downloading @wp-playground/cli@3.1.56 from npm"
    (cd "$CACHE" && npm pack --silent @wp-playground/cli@3.1.56 >/dev/null)
    check "$CACHE/$PLAYGROUND_TGZ" "$PLAYGROUND_SHA256" || die "$PLAYGROUND_TGZ: sha256 mismatch"
fi

# The site is rebuilt from the cache each time, next to the old one, then swapped in.
log "assembling $HERE/site"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP" "$HERE/site.new"' EXIT
for entry in "${DEBS[@]}"; do
    read -r pkg ver _ <<<"$entry"
    dpkg-deb -x "$(deb_file "$pkg" "$ver")" "$TMP/root"
done
WP="$TMP/root/usr/share/wordpress"
# Two symlinks point outside the package: .htaccess (Apache only) and
# wp-includes/certificates/ca-bundle.crt (the host's CA list; used only for outbound HTTPS,
# which this example blocks). They are left out rather than filled with host files.
find "$WP" -lname '/*' -delete
rm -rf "$HERE/site.new"
cp -rL "$WP" "$HERE/site.new"      # -L: the relative symlinks become the files they name
cp "$HERE/wp-config.php" "$HERE/site.new/wp-config.php"   # replaces Debian's /etc/wordpress loader

tar -xzf "$CACHE/$PLAYGROUND_TGZ" -C "$TMP" package/sqlite-database-integration.zip
unzip -q "$TMP/package/sqlite-database-integration.zip" -d "$TMP/plugin"
PLUGIN="$HERE/site.new/wp-content/plugins/sqlite-database-integration"
mv "$TMP/plugin/plugin-sqlite-database-integration" "$PLUGIN"
# db.copy quotes the folder path as '{SQLITE_IMPLEMENTATION_FOLDER_PATH}'; filling it with
# ' . __DIR__ . '/plugins/... makes it a concatenation, so the docroot can live anywhere.
sed -e "s|{SQLITE_IMPLEMENTATION_FOLDER_PATH}|' . __DIR__ . '/plugins/sqlite-database-integration|" \
    -e "s|{SQLITE_PLUGIN}|sqlite-database-integration/load.php|g" \
    "$PLUGIN/db.copy" >"$HERE/site.new/wp-content/db.php"
if grep -q '{SQLITE_' "$HERE/site.new/wp-content/db.php"; then die "db.copy has placeholders this script does not fill"; fi

rm -rf "$HERE/site"
mv "$HERE/site.new" "$HERE/site"

wasm="$("$REPO/interpreters/php/build.sh")/php-cgi.wasm"
# Replaced by rename, never rewritten in place, in case a server has it open.
cmp -s "$wasm" "$HERE/php-cgi.wasm" || { cp "$wasm" "$HERE/php-cgi.wasm.new" && mv -f "$HERE/php-cgi.wasm.new" "$HERE/php-cgi.wasm"; }
mkdir -p "$HERE/data"

log "ready: wcgi run examples/wordpress --mapdir /data:examples/wordpress/data"
echo "$HERE/site"

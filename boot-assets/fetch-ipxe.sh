#!/usr/bin/env bash
# fetch-ipxe.sh ASSETS_DIR — install the iPXE binaries listed in manifest.toml into
# ASSETS_DIR/tftp/, taken from Debian's `ipxe` package and verified by SHA-256.
#
# Idempotent: when every destination already exists with the manifest's hash, nothing is done
# (no network). Otherwise `apt-get download ipxe=<version>` into a temporary directory
# (`apt-get update` is run only when apt does not know that version, i.e. the package lists are
# missing or stale), `dpkg-deb -x`, verify every file, then copy. Nothing is installed unless
# every file verifies.
#
# Environment:
#   MANIFEST=FILE          manifest to use (default: manifest.toml next to this script)
#   ALLOW_OTHER_VERSION=1  if the pinned version cannot be downloaded, take apt's candidate
#                          version instead, print its hashes, and install it unverified
#                          (update manifest.toml with the printed values to pin it again)
# Needs: bash, coreutils, python3 >= 3.11 (tomllib), apt-get, dpkg-deb.
set -euo pipefail

prog=fetch-ipxe
die() { echo "$prog: $*" >&2; exit 1; }
log() { echo "$prog: $*"; }

[ $# -eq 1 ] || die "usage: $0 ASSETS_DIR"
assets_dir=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
manifest=${MANIFEST:-$here/manifest.toml}
[ -f "$manifest" ] || die "manifest not found: $manifest"
command -v python3 >/dev/null || die "python3 is required (for tomllib)"

# Read the manifest: first line "<package>\t<version>", then one line per asset:
# "<name>\t<path in package>\t<sha256>\t<dest under ASSETS_DIR>".
manifest_lines=$(python3 - "$manifest" <<'PY'
import re, sys
try:
    import tomllib
except ImportError:
    sys.exit("fetch-ipxe: python3 >= 3.11 is required (tomllib)")
with open(sys.argv[1], "rb") as f:
    m = tomllib.load(f)
pkg = m["package"]
safe = re.compile(r"^[A-Za-z0-9._+~:-]+$")
for v in (pkg["name"], pkg["version"]):
    if not safe.match(v):
        sys.exit(f"fetch-ipxe: bad package name/version in manifest: {v!r}")
print(f"{pkg['name']}\t{pkg['version']}")
assets = m.get("asset", [])
if not assets:
    sys.exit("fetch-ipxe: manifest lists no [[asset]]")
for a in assets:
    name, path, sha, dest = a["name"], a["path"], a["sha256"], a["dest"]
    if a.get("package", pkg["name"]) != pkg["name"]:
        sys.exit(f"fetch-ipxe: {name}: only package {pkg['name']!r} is supported")
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        sys.exit(f"fetch-ipxe: {name}: sha256 must be 64 lower-case hex digits")
    for p in (path, dest):
        parts = p.split("/")
        if p.startswith("/") or any(x in ("", ".", "..") for x in parts) or not re.fullmatch(r"[A-Za-z0-9._/+-]+", p):
            sys.exit(f"fetch-ipxe: {name}: bad path {p!r} (relative, no '..')")
    print(f"{name}\t{path}\t{sha}\t{dest}")
PY
) || die "cannot read $manifest"

IFS=$'\t' read -r pkg_name pkg_version <<<"$(head -n1 <<<"$manifest_lines")"
mapfile -t assets < <(tail -n +2 <<<"$manifest_lines")

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# 1. Already installed?
up_to_date=1
for line in "${assets[@]}"; do
  IFS=$'\t' read -r name path sha dest <<<"$line"
  f=$assets_dir/$dest
  if [ ! -f "$f" ] || [ "$(sha_of "$f")" != "$sha" ]; then up_to_date=0; break; fi
done
if [ $up_to_date = 1 ]; then
  log "up to date: ${#assets[@]} files in $assets_dir/ match $pkg_name $pkg_version"
  exit 0
fi

command -v apt-get >/dev/null || die "apt-get is required"
command -v dpkg-deb >/dev/null || die "dpkg-deb is required"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fetch-ipxe.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# apt-get download drops privileges to _apt when it can; let it write here.
chmod 0777 "$tmp" 2>/dev/null || true

apt_knows_version() {
  apt-cache madison "$pkg_name" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); print $2}' | grep -qxF "$1"
}

download() { # download PKGSPEC → 0 when a .deb landed in $tmp
  (cd "$tmp" && apt-get download -q "$1") >"$tmp/apt.log" 2>&1
}

# 2. Download the pinned version.
version=$pkg_version
verified=1
if ! download "$pkg_name=$pkg_version"; then
  if ! apt_knows_version "$pkg_version"; then
    log "apt does not know $pkg_name $pkg_version (package lists missing or stale): running apt-get update"
    if [ "$(id -u)" != 0 ]; then
      die "apt-get update needs root: run 'sudo apt-get update' and retry"
    fi
    apt-get update -qq || die "apt-get update failed"
  fi
  if ! download "$pkg_name=$pkg_version"; then
    cat "$tmp/apt.log" >&2
    if [ "${ALLOW_OTHER_VERSION:-0}" != 1 ]; then
      die "cannot download $pkg_name=$pkg_version; set ALLOW_OTHER_VERSION=1 to take apt's candidate version (hashes will be printed, not verified)"
    fi
    version=$(apt-cache policy "$pkg_name" | awk '/Candidate:/ {print $2}')
    [ -n "$version" ] && [ "$version" != "(none)" ] || die "apt has no candidate version of $pkg_name"
    log "WARNING: pinned $pkg_version unavailable, using candidate $pkg_name $version (ALLOW_OTHER_VERSION=1)"
    download "$pkg_name=$version" || { cat "$tmp/apt.log" >&2; die "cannot download $pkg_name=$version"; }
    verified=0
  fi
fi
debs=("$tmp"/*.deb)
[ -f "${debs[0]}" ] || die "apt-get download produced no .deb"
deb=${debs[0]}
log "downloaded $(basename "$deb")"

# 3. Extract and verify everything before installing anything.
mkdir "$tmp/x"
dpkg-deb -x "$deb" "$tmp/x" || die "dpkg-deb -x failed on $deb"

resolve() { # path inside the extracted tree, following one symlink within the tree
  local f=$tmp/x/$1 t
  if [ -L "$f" ]; then
    t=$(readlink "$f")
    case $t in
      /*) f=$tmp/x$t ;;
      *) f=$(dirname "$f")/$t ;;
    esac
  fi
  [ -f "$f" ] && [ ! -L "$f" ] || return 1
  printf '%s\n' "$f"
}

failed=0
sources=()
for line in "${assets[@]}"; do
  IFS=$'\t' read -r name path sha dest <<<"$line"
  src=$(resolve "$path") || { echo "$prog: $name: $path not found in $(basename "$deb")" >&2; failed=1; continue; }
  got=$(sha_of "$src")
  if [ $verified = 0 ]; then
    log "$name: sha256 = \"$got\"   (manifest, for $pkg_version: $sha)"
  elif [ "$got" != "$sha" ]; then
    echo "$prog: SHA-256 MISMATCH for $name ($path in $(basename "$deb")): manifest $sha, got $got" >&2
    failed=1
    continue
  fi
  sources+=("$src")
done
[ $failed = 0 ] || die "verification failed: nothing installed"
if [ $verified = 0 ]; then
  log "installed files are from $pkg_name $version, NOT the pinned $pkg_version: update manifest.toml (version and the sha256 values above)"
fi

# 4. Install (atomically per file).
i=0
for line in "${assets[@]}"; do
  IFS=$'\t' read -r name path sha dest <<<"$line"
  out=$assets_dir/$dest
  mkdir -p "$(dirname "$out")"
  cp "${sources[$i]}" "$out.tmp.$$"
  chmod 0644 "$out.tmp.$$"
  mv -f "$out.tmp.$$" "$out"
  log "installed $out"
  i=$((i + 1))
done
log "done: ${#assets[@]} files from $pkg_name $version in $assets_dir/"

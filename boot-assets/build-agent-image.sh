#!/usr/bin/env bash
# Builds the rackboot agent boot image from Debian packages:
#   ASSETS_DIR/agent/vmlinuz            the Debian kernel (the dependency of linux-image-amd64)
#   ASSETS_DIR/agent/initramfs.cpio.gz  busybox-static, the needed modules, ipmitool, the agent
#
# usage: boot-assets/build-agent-image.sh ASSETS_DIR [AGENT_BIN]
#
# Pins live in boot-assets/agent-image.lock (kernel and busybox/ipmitool package versions and
# .deb SHA-256s). With a lock present the pinned versions are used and verified; with none, or
# with AGENT_IMAGE_UPDATE=1, apt's candidates are taken and the lock is (re)written. Output
# hashes are printed and written to ASSETS_DIR/agent/manifest.txt. Idempotent: downloads and
# the extracted kernel are cached under target/agent-image-cache (AGENT_IMAGE_CACHE=DIR), and
# the image is not rebuilt when its inputs are unchanged. The cpio is deterministic: sorted
# entries, mtimes fixed to SOURCE_DATE_EPOCH (default 1700000000), owner 0:0, gzip -n.
set -euo pipefail

die() { echo "build-agent-image: $*" >&2; exit 1; }
say() { echo "build-agent-image: $*" >&2; }

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $0 ASSETS_DIR [AGENT_BIN]"
REPO=$(cd "$(dirname "$0")/.." && pwd)
ASSETS=$(mkdir -p "$1" && cd "$1" && pwd)
OUT="$ASSETS/agent"
CACHE=${AGENT_IMAGE_CACHE:-$REPO/target/agent-image-cache}
LOCK=${AGENT_IMAGE_LOCK:-$REPO/boot-assets/agent-image.lock}
EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
# Modules the image loads (with their dependencies, resolved by modprobe): virtual and common
# server NICs and storage controllers, and the in-band IPMI interface.
MODULES=${AGENT_IMAGE_MODULES:-"virtio_pci virtio_net virtio_blk virtio_scsi \
e1000 e1000e igb igc ixgbe i40e ice tg3 bnxt_en r8169 \
nvme ahci sd_mod megaraid_sas mpt3sas \
ipmi_si ipmi_devintf"}

for t in apt-get apt-cache dpkg-deb depmod modprobe cpio gzip sha256sum ldd; do
  command -v "$t" >/dev/null || die "missing tool: $t"
done

# --- the agent binary -----------------------------------------------------------------------
AGENT_BIN=${2:-}
if [ -z "$AGENT_BIN" ]; then
  for c in "$REPO/target/release/rackboot-agent" \
           "${CARGO_TARGET_DIR:-/nonexistent}/release/rackboot-agent" \
           "${CARGO_TARGET_DIR:-/nonexistent}/debug/rackboot-agent" \
           "/work/target-agent/debug/rackboot-agent" \
           "$REPO/target/debug/rackboot-agent"; do
    if [ -x "$c" ]; then AGENT_BIN=$c; break; fi
  done
fi
[ -n "$AGENT_BIN" ] && [ -x "$AGENT_BIN" ] ||
  die "no agent binary: build it (cargo build --release -p rackboot-agent) or pass AGENT_BIN"
say "agent binary: $AGENT_BIN"

# --- pins -----------------------------------------------------------------------------------
lock_get() { [ -f "$LOCK" ] && sed -n "s/^$1 = \"\(.*\)\"$/\1/p" "$LOCK" | head -n1 || true; }
UPDATE=${AGENT_IMAGE_UPDATE:-}
[ -f "$LOCK" ] || UPDATE=1

candidate() { apt-cache policy "$1" 2>/dev/null | sed -n 's/^  Candidate: //p' | grep -v '(none)' || true; }
ensure_apt_knows() { # package version
  if ! apt-cache show "$1=$2" >/dev/null 2>&1; then
    say "apt does not know $1=$2: apt-get update"
    apt-get update -qq >&2 || die "apt-get update failed (needs root)"
  fi
}

if [ -n "$UPDATE" ]; then
  [ -n "$(candidate linux-image-amd64)" ] || apt-get update -qq >&2 || die "apt-get update failed"
  KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
         sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)
  [ -n "$KPKG" ] || die "cannot resolve the kernel package behind linux-image-amd64"
  KVER=$(candidate "$KPKG"); BBVER=$(candidate busybox-static); IPMIVER=$(candidate ipmitool)
  KSHA= BBSHA= IPMISHA=
else
  KPKG=$(lock_get kernel_package); KVER=$(lock_get kernel_version); KSHA=$(lock_get kernel_deb_sha256)
  BBVER=$(lock_get busybox_version); BBSHA=$(lock_get busybox_deb_sha256)
  IPMIVER=$(lock_get ipmitool_version); IPMISHA=$(lock_get ipmitool_deb_sha256)
fi
[ -n "$KPKG" ] && [ -n "$KVER" ] && [ -n "$BBVER" ] || die "incomplete pins in $LOCK"

# --- downloads (cached) ---------------------------------------------------------------------
mkdir -p "$CACHE/debs"
fetch() { # package version expected-sha256-or-empty → prints the .deb path
  local pkg=$1 ver=$2 want=$3 deb
  deb="$CACHE/debs/${pkg}_$(printf %s "$ver" | sed 's/^[0-9]*://')_amd64.deb"
  if [ ! -f "$deb" ]; then
    ensure_apt_knows "$pkg" "$ver"
    local tmp; tmp=$(mktemp -d "$CACHE/dl.XXXXXX")
    (cd "$tmp" && apt-get download -q "$pkg=$ver" >/dev/null 2>&1) ||
      { rm -rf "$tmp"; die "apt-get download $pkg=$ver failed (pin gone? re-run with AGENT_IMAGE_UPDATE=1)"; }
    mv "$tmp"/*.deb "$deb"; rm -rf "$tmp"
  fi
  local got; got=$(sha256sum "$deb" | cut -d' ' -f1)
  if [ -n "$want" ] && [ "$got" != "$want" ]; then
    die "$deb: sha256 $got, lock says $want"
  fi
  printf '%s\n' "$deb"
}
KDEB=$(fetch "$KPKG" "$KVER" "$KSHA")
BBDEB=$(fetch busybox-static "$BBVER" "$BBSHA")
IPMIDEB=
if [ -n "$IPMIVER" ]; then IPMIDEB=$(fetch ipmitool "$IPMIVER" "$IPMISHA"); fi
KSHA=$(sha256sum "$KDEB" | cut -d' ' -f1)
BBSHA=$(sha256sum "$BBDEB" | cut -d' ' -f1)
IPMISHA=$([ -n "$IPMIDEB" ] && sha256sum "$IPMIDEB" | cut -d' ' -f1 || true)

extract() { # deb dir
  if [ ! -f "$2/.done" ]; then
    rm -rf "$2"; mkdir -p "$2"
    dpkg-deb -x "$1" "$2"
    touch "$2/.done"
  fi
}
KDIR="$CACHE/x/$KPKG-$KVER"
BBDIR="$CACHE/x/busybox-static-$BBVER"
extract "$KDEB" "$KDIR"
extract "$BBDEB" "$BBDIR"
if [ -n "$IPMIDEB" ]; then IPMIDIR="$CACHE/x/ipmitool-$IPMIVER"; extract "$IPMIDEB" "$IPMIDIR"; fi

KREL=$(ls "$KDIR/lib/modules" | head -n1)
[ -n "$KREL" ] && [ -f "$KDIR/boot/vmlinuz-$KREL" ] || die "no kernel in $KDEB"
[ -f "$KDIR/lib/modules/$KREL/modules.dep" ] || depmod -b "$KDIR" "$KREL"

# --- module list, in load order -------------------------------------------------------------
MODLIST=$(mktemp); trap 'rm -f "$MODLIST"' EXIT
for m in $MODULES; do
  modprobe -d "$KDIR" -S "$KREL" --show-depends "$m" 2>/dev/null ||
    say "warning: module $m not found in $KREL"
done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' > "$MODLIST"
[ -s "$MODLIST" ] || die "no modules resolved"

# --- inputs key: skip the rebuild when nothing changed ----------------------------------------
AGENT_SHA=$(sha256sum "$AGENT_BIN" | cut -d' ' -f1)
KEY=$( { sha256sum "$0" | cut -d' ' -f1; echo "$KPKG $KVER $KSHA $BBVER $BBSHA $IPMIVER $IPMISHA";
         echo "$AGENT_SHA $EPOCH $MODULES"; } | sha256sum | cut -d' ' -f1)
if [ -f "$OUT/build.key" ] && [ "$(cat "$OUT/build.key")" = "$KEY" ] &&
   [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initramfs.cpio.gz" ]; then
  say "up to date: $OUT"
  cat "$OUT/manifest.txt"
  exit 0
fi

# --- the initramfs tree -----------------------------------------------------------------------
STAGE=$(mktemp -d "$CACHE/stage.XXXXXX")
trap 'rm -f "$MODLIST"; rm -rf "$STAGE"' EXIT
R="$STAGE/root"
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc/rackboot,proc,sys,dev,run,tmp,var/run,lib/modules/"$KREL"}

install -m 0755 "$BBDIR/bin/busybox" "$R/bin/busybox"
# Applet links at the paths busybox itself would use (--install), made here so the tree is fixed.
"$R/bin/busybox" --list-full | LC_ALL=C sort | while read -r p; do
  [ "$p" = bin/busybox ] && continue
  mkdir -p "$R/$(dirname "$p")"
  [ -e "$R/$p" ] || ln -s /bin/busybox "$R/$p"
done

copy_libs() { # binary: copy its shared libraries and the loader to the same absolute paths
  ldd "$1" 2>/dev/null | awk '/=> \// { print $3 } /^\t\/.*\(0x/ { print $1 }' | while read -r lib; do
    [ -e "$R$lib" ] && continue
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"; chmod 0755 "$R$lib"
  done
  if ldd "$1" 2>/dev/null | grep -q 'not found'; then die "$1: missing libraries: $(ldd "$1" | grep 'not found')"; fi
}

install -m 0755 "$AGENT_BIN" "$R/usr/bin/rackboot-agent"
if command -v strip >/dev/null; then strip "$R/usr/bin/rackboot-agent"; fi
copy_libs "$R/usr/bin/rackboot-agent"
if [ -n "$IPMIDEB" ]; then
  install -m 0755 "$IPMIDIR/usr/bin/ipmitool" "$R/usr/bin/ipmitool"
  copy_libs "$R/usr/bin/ipmitool"
fi

: > "$R/etc/rackboot/modules"
while read -r ko; do
  rel=${ko#"$KDIR"/lib/modules/"$KREL"/}
  dest="$R/lib/modules/$KREL/$rel"
  mkdir -p "$(dirname "$dest")"
  case "$ko" in
    *.ko.xz)  xz -dc "$ko" > "${dest%.xz}"; dest=${dest%.xz} ;;
    *.ko.zst) zstd -qdc "$ko" > "${dest%.zst}"; dest=${dest%.zst} ;;
    *)        cp "$ko" "$dest" ;;
  esac
  chmod 0644 "$dest"
  echo "/lib/modules/$KREL/${dest#"$R/lib/modules/$KREL/"}" >> "$R/etc/rackboot/modules"
done < "$MODLIST"

echo "rackboot agent image: $KPKG $KVER" > "$R/etc/rackboot-agent-image"
printf 'root:x:0:0:root:/:/bin/sh\n' > "$R/etc/passwd"
printf 'root:x:0:\n' > "$R/etc/group"

cat > "$R/etc/rackboot/udhcpc.script" <<'EOF'
#!/bin/sh
# udhcpc hook: configure the interface from the lease.
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
    for r in $router; do ip -4 route add default via "$r" dev "$interface" 2>/dev/null && break; done
    : > /etc/resolv.conf
    [ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    echo "RACKBOOT-AGENT: $interface $ip/${mask:-24} router ${router:-none}"
    ;;
esac
exit 0
EOF
chmod 0755 "$R/etc/rackboot/udhcpc.script"

cat > "$R/init" <<'EOF'
#!/bin/sh
# rackboot agent image init (PID 1): mount, load modules, DHCP, run the agent forever.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
exec </dev/console >/dev/console 2>&1
echo "RACKBOOT-AGENT: init $(uname -r), uptime $(cut -d' ' -f1 /proc/uptime)s"

while read -r ko; do
  insmod "$ko" 2>/dev/null || true  # absent hardware: the probe fails, that is fine
done < /etc/rackboot/modules
echo "RACKBOOT-AGENT: modules loaded, uptime $(cut -d' ' -f1 /proc/uptime)s"

ip link set lo up
# The NIC iPXE booted from first when the cmdline names it (BOOTIF=01-aa-bb-cc-dd-ee-ff).
bootmac=$(sed -n 's/.*BOOTIF=01-\([0-9a-fA-F-]*\).*/\1/p' /proc/cmdline | tr 'A-F-' 'a-f:')
nics() {
  for n in /sys/class/net/*; do
    name=${n##*/}
    [ "$name" = lo ] && continue
    [ -n "$bootmac" ] && [ "$(cat "$n/address")" = "$bootmac" ] && echo "0 $name" && continue
    echo "1 $name"
  done | sort | cut -d' ' -f2
}
up=""
for try in 1 2 3 4 5; do
  for n in $(nics); do ip link set "$n" up 2>/dev/null; done
  # Give links a moment to negotiate, then try NICs with carrier first.
  i=0; while [ $i -lt 10 ]; do
    grep -qs 1 /sys/class/net/*/carrier && break; sleep 0.3; i=$((i + 1))
  done
  for n in $(nics); do
    [ "$(cat /sys/class/net/$n/carrier 2>/dev/null)" = 1 ] || continue
    if udhcpc -n -q -t 5 -T 2 -i "$n" -s /etc/rackboot/udhcpc.script; then up=$n; break 2; fi
  done
  echo "RACKBOOT-AGENT: no DHCP lease yet (try $try)"; sleep 2
done

echo "RACKBOOT-AGENT: starting (network: ${up:-none}), uptime $(cut -d' ' -f1 /proc/uptime)s"
echo "RACKBOOT-AGENT: cmdline: $(cat /proc/cmdline)"
while true; do
  /usr/bin/rackboot-agent
  echo "RACKBOOT-AGENT: agent exited with $?, restarting in 5s"
  sleep 5
done
EOF
chmod 0755 "$R/init"

# --- deterministic cpio ---------------------------------------------------------------------
find "$R" -exec touch -h -d "@$EPOCH" {} +
mkdir -p "$OUT"
(cd "$R" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
   cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) |
  gzip -n -9 > "$OUT/initramfs.cpio.gz.tmp"
cp "$KDIR/boot/vmlinuz-$KREL" "$OUT/vmlinuz.tmp"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"

VMLINUZ_SHA=$(sha256sum "$OUT/vmlinuz" | cut -d' ' -f1)
WANT_VMLINUZ=$([ -z "$UPDATE" ] && lock_get vmlinuz_sha256 || true)
if [ -n "$WANT_VMLINUZ" ] && [ "$WANT_VMLINUZ" != "$VMLINUZ_SHA" ]; then
  rm -f "$OUT/vmlinuz" "$OUT/build.key"
  die "vmlinuz sha256 $VMLINUZ_SHA, lock says $WANT_VMLINUZ"
fi
INITRD_SHA=$(sha256sum "$OUT/initramfs.cpio.gz" | cut -d' ' -f1)
NMOD=$(wc -l < "$R/etc/rackboot/modules")
{
  echo "kernel_package = \"$KPKG\""
  echo "kernel_version = \"$KVER\""
  echo "kernel_release = \"$KREL\""
  echo "busybox_version = \"$BBVER\""
  echo "ipmitool_version = \"$IPMIVER\""
  echo "agent_sha256 = \"$AGENT_SHA\""
  echo "modules = \"$NMOD\""
  echo "vmlinuz_sha256 = \"$VMLINUZ_SHA\""
  echo "initramfs_sha256 = \"$INITRD_SHA\""
  echo "initramfs_bytes = \"$(stat -c %s "$OUT/initramfs.cpio.gz")\""
} > "$OUT/manifest.txt"
echo "$KEY" > "$OUT/build.key"

if [ -n "$UPDATE" ]; then
  {
    echo "# rackboot agent image pins, written by boot-assets/build-agent-image.sh"
    echo "# (AGENT_IMAGE_UPDATE=1 re-resolves them from apt). vmlinuz_sha256 is a function of"
    echo "# the kernel package alone; the initramfs also depends on the agent binary."
    echo "kernel_package = \"$KPKG\""
    echo "kernel_version = \"$KVER\""
    echo "kernel_deb_sha256 = \"$KSHA\""
    echo "kernel_release = \"$KREL\""
    echo "vmlinuz_sha256 = \"$VMLINUZ_SHA\""
    echo "busybox_version = \"$BBVER\""
    echo "busybox_deb_sha256 = \"$BBSHA\""
    echo "ipmitool_version = \"$IPMIVER\""
    echo "ipmitool_deb_sha256 = \"$IPMISHA\""
  } > "$LOCK"
  say "wrote $LOCK"
fi
say "built $OUT ($NMOD modules)"
cat "$OUT/manifest.txt"

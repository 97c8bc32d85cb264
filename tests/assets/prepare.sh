#!/usr/bin/env bash
# Test boot assets for the QEMU end-to-end tests, cached in OUT (default target/e2e-assets):
#   vmlinuz          Debian's current amd64 kernel (from linux-image-amd64's dependency)
#   marker-initrd.gz busybox initramfs that prints a marker and its command line, then powers off
#   tftp/            the pinned iPXE binaries (boot-assets/fetch-ipxe.sh)
#   agent/           the agent image (boot-assets/build-agent-image.sh with the debug agent)
# Idempotent: existing outputs are kept.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$here/../../target/e2e-assets}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

"$here/../../boot-assets/fetch-ipxe.sh" "$OUT" >/dev/null

if [ ! -s "$OUT/vmlinuz" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
  if [ -z "$pkg" ]; then apt-get update -qq; pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}'); fi
  [ -n "$pkg" ] || { echo "prepare: cannot resolve the kernel package behind linux-image-amd64" >&2; exit 1; }
  (cd "$tmp" && apt-get download -qq "$pkg")
  dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*'
  cp "$tmp"/boot/vmlinuz-* "$OUT/vmlinuz.tmp" && mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
  echo "prepare: kernel $pkg"
fi

# v2: holds (stays up) when the command line has rackboot.hold, for BMC power tests.
if [ ! -s "$OUT/marker-initrd.gz" ] || ! grep -q v2 "$OUT/marker-initrd.version" 2>/dev/null; then
  root=$(mktemp -d)
  mkdir -p "$root"/{bin,proc,sys,dev}
  cp /bin/busybox "$root/bin/busybox"
  cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
echo "=== RACKBOOT-MARKER: initramfs reached userspace ==="
echo "RACKBOOT-CMDLINE: $(cat /proc/cmdline)"
if [ -d /sys/firmware/efi ]; then echo "RACKBOOT-FIRMWARE: UEFI"; else echo "RACKBOOT-FIRMWARE: BIOS"; fi
echo "=== RACKBOOT-MARKER-END ==="
grep -q rackboot.hold /proc/cmdline && while true; do sleep 3600; done
poweroff -f
INIT
  chmod +x "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$OUT/marker-initrd.gz.tmp"
  mv "$OUT/marker-initrd.gz.tmp" "$OUT/marker-initrd.gz"
  echo v2 > "$OUT/marker-initrd.version"
  rm -rf "$root"
fi
# The agent image (kernel + initramfs with rackboot-agent) for the lifecycle tests.
AGENT_BIN=${AGENT_BIN:-$here/../../target/debug/rackboot-agent}
if [ -x "$AGENT_BIN" ]; then
  "$here/../../boot-assets/build-agent-image.sh" "$OUT" "$AGENT_BIN" >/dev/null
else
  echo "prepare: $AGENT_BIN not built yet (cargo build -p rackboot-agent); skipping the agent image" >&2
fi
echo "$OUT"

#!/usr/bin/env bash
# image/build.sh OUT_DIR [--overlay lab|prod] [--esp-size MIB] [--data-size MIB]
#
# Builds the rackboot appliance disk image described by image/image.toml, as plain files: no root,
# no loop devices, no mounts. Outputs in OUT_DIR:
#   rackboot.img     raw GPT disk: `dd if=rackboot.img of=/dev/sdX bs=4M conv=fsync`
#   rackboot.qcow2   the same disk for VMs
#   rackboot.efi     the unified kernel image alone (kernel + initramfs + command line)
#   build-info.txt   what went in (kernel, rackboot version, overlay, sizes, timings)
#
# Environment:
#   RACKBOOT_BIN=FILE            rackboot binary (default: target/release/rackboot, else target/debug)
#   RACKBOOT_IMAGE_CACHE=DIR     kernel/iPXE cache (default: target/image-cache)
#   KEEP_WORK=1                  keep OUT_DIR/work (initramfs tree, partition images)
#
# Needs (Debian packages): systemd-boot-efi binutils mtools fdisk e2fsprogs qemu-utils kmod cpio
# busybox-static python3 (>= 3.11, tomllib), apt (apt-get download) and dpkg.
set -euo pipefail

prog=image/build.sh
die() { echo "$prog: error: $*" >&2; exit 1; }
log() { echo "$prog: $*"; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

out="" overlay=lab esp_mib="" data_mib=""
while [ $# -gt 0 ]; do
  case "$1" in
    --overlay) overlay=${2:?--overlay needs a name}; shift 2 ;;
    --overlay=*) overlay=${1#*=}; shift ;;
    --esp-size) esp_mib=${2:?}; shift 2 ;;
    --data-size) data_mib=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) [ -z "$out" ] || die "one OUT_DIR only"; out=$1; shift ;;
  esac
done
[ -n "$out" ] || die "usage: $0 OUT_DIR [--overlay lab|prod] [--esp-size MIB] [--data-size MIB]"

STUB=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
missing=""
for c in python3 objcopy mformat mmd mcopy sfdisk mke2fs qemu-img depmod modprobe dpkg-deb apt-get \
         apt-cache cpio gzip ldd strip; do
  command -v "$c" >/dev/null || missing="$missing $c"
done
[ -f "$STUB" ] || missing="$missing $STUB(systemd-boot-efi)"
[ -z "$missing" ] || die "missing tools:$missing
  apt-get install systemd-boot-efi binutils mtools fdisk e2fsprogs qemu-utils kmod cpio busybox-static python3"

t_start=$(now)
mkdir -p "$out"
out=$(cd "$out" && pwd)
cache=${RACKBOOT_IMAGE_CACHE:-$repo/target/image-cache}
mkdir -p "$cache"
work=$out/work
rm -rf "$work"
mkdir -p "$work"
[ "${KEEP_WORK:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT

# --- the description ----------------------------------------------------------------------------
# image.toml → shell assignments (shlex-quoted) + file lists "dest<TAB>source".
desc=$(python3 - "$here/image.toml" "$overlay" "$work" <<'PY'
import shlex, sys, tomllib, os
path, overlay, work = sys.argv[1:]
with open(path, "rb") as f:
    d = tomllib.load(f)
ovs = d.get("overlay", {})
if overlay not in ovs:
    sys.exit(f"image/build.sh: error: unknown overlay {overlay!r} (image.toml has: {', '.join(ovs)})")
ov = ovs[overlay]
img, ker, ini = d["image"], d["kernel"], d["initramfs"]
def out(k, v):
    print(f"{k}={shlex.quote(str(v))}")
out("IMAGE_NAME", img["name"])
out("ESP_MIB", img["esp_size_mib"]); out("DATA_MIB", img["data_size_mib"])
out("ESP_LABEL", img["esp_label"]); out("DATA_LABEL", img["data_label"])
out("CMDLINE", " ".join(x for x in (img.get("cmdline", ""), ov.get("cmdline", ""),
                                    f"rackboot.overlay={overlay}") if x))
out("OVERLAY_DESC", ov.get("description", ""))
out("KERNEL_PACKAGE", ker["package"])
out("MODULES", " ".join(ker["modules"]))
out("BUSYBOX", ini.get("busybox", "/bin/busybox"))
out("BINARIES", " ".join(ini.get("binaries", [])))
out("TREE", ini.get("tree", "initramfs"))
out("COMPRESSION", ini.get("compression", "gzip"))
if len(img["esp_label"]) > 11:
    sys.exit("image/build.sh: error: esp_label is longer than 11 characters")
for name, base, extra in (("initramfs", ini.get("files", {}), ov.get("files", {})),
                          ("esp", d.get("esp", {}).get("files", {}), ov.get("esp_files", {}))):
    merged = dict(base); merged.update(extra)
    with open(os.path.join(work, f"{name}.files"), "w") as f:
        for dest, src in merged.items():
            if not dest.startswith("/") or ".." in dest.split("/"):
                sys.exit(f"image/build.sh: error: bad destination {dest!r}")
            f.write(f"{dest}\t{src}\n")
PY
) || exit 1
eval "$desc"
ESP_MIB=${esp_mib:-$ESP_MIB}
DATA_MIB=${data_mib:-$DATA_MIB}
case "$ESP_MIB$DATA_MIB" in *[!0-9]*) die "sizes must be whole MiB" ;; esac
[ "$ESP_MIB" -ge 34 ] || die "ESP size must be >= 34 MiB (FAT32)"
[ "$DATA_MIB" -ge 16 ] || die "data size must be >= 16 MiB"
log "building '$IMAGE_NAME' overlay '$overlay' ($OVERLAY_DESC) into $out"

# --- kernel (Debian package, cached) ------------------------------------------------------------
t=$(now)
kpkg=$(apt-cache depends "$KERNEL_PACKAGE" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
if [ -z "$kpkg" ]; then
  [ "$(id -u)" = 0 ] || die "apt does not know $KERNEL_PACKAGE: run apt-get update (as root)"
  apt-get update -qq
  kpkg=$(apt-cache depends "$KERNEL_PACKAGE" | awk '/Depends: linux-image-/{print $2; exit}')
fi
[ -n "$kpkg" ] || die "cannot resolve the kernel package behind $KERNEL_PACKAGE"
kver_pkg=$(apt-cache policy "$kpkg" | awk '/Candidate:/{print $2; exit}')
kdir=$cache/kernel/${kpkg}_$kver_pkg
if [ ! -f "$kdir/.ok" ]; then
  log "kernel: downloading $kpkg $kver_pkg (cached in $kdir)"
  rm -rf "$kdir"; mkdir -p "$kdir/dl"
  sandbox=(); [ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
  (cd "$kdir/dl" && apt-get "${sandbox[@]}" download -qq "$kpkg=$kver_pkg") || die "apt-get download $kpkg failed"
  dpkg-deb --fsys-tarfile "$kdir"/dl/*.deb | tar -x -C "$kdir" ./boot ./lib/modules
  rm -rf "$kdir/dl"
  kv=$(basename "$(ls -d "$kdir"/lib/modules/*)")
  depmod -b "$kdir" "$kv"
  echo "$kv" > "$kdir/.ok"
fi
KVER=$(cat "$kdir/.ok")
VMLINUZ=$kdir/boot/vmlinuz-$KVER
[ -f "$VMLINUZ" ] || die "no kernel in $kdir"
t_kernel=$(took "$t")

# --- initramfs tree -----------------------------------------------------------------------------
t=$(now)
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc/rackboot,proc,sys,dev,run,tmp,data,boot/efi}
mkdir -p "$root/usr/share/rackboot/assets/tftp"

# copy_elf SRC DEST: an executable plus the shared libraries and loader ldd lists for it
copy_elf() {
  install -D -m 0755 "$1" "$root$2"
  { ldd "$1" 2>/dev/null || true; } | awk '/=> \//{print $3} /^[ \t]*\/[^ ]*ld-linux/{print $1}' | while read -r lib; do
    [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
}

[ -x "$BUSYBOX" ] || die "$BUSYBOX not found (apt-get install busybox-static)"
copy_elf "$BUSYBOX" /bin/busybox
for a in $("$BUSYBOX" --list); do
  [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
done

rb=${RACKBOOT_BIN:-}
if [ -z "$rb" ]; then
  for c in "$repo/target/release/rackboot" "$repo/target/debug/rackboot"; do
    [ -x "$c" ] && { rb=$c; break; }
  done
fi
[ -n "$rb" ] && [ -x "$rb" ] || die "no rackboot binary: cargo build --release -p rackboot (or set RACKBOOT_BIN)"
rb_version=$("$rb" --version 2>/dev/null || echo "rackboot (unknown version)")
strip --strip-unneeded -o "$work/rackboot" "$rb"
copy_elf "$work/rackboot" /usr/bin/rackboot
for b in $BINARIES; do
  p=$(command -v "$b" || true); [ -n "$p" ] || p=$b
  [ -x "$p" ] || die "binary $b not found"
  copy_elf "$p" "/usr/sbin/$(basename "$b")"
done
[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$root/etc/mke2fs.conf"

cp -a "$here/$TREE/." "$root/"
while IFS=$'\t' read -r dest src; do
  [ -f "$here/$src" ] || die "image.toml names $src, which does not exist"
  install -D -m 0644 "$here/$src" "$root$dest"
done < "$work/initramfs.files"
"$root/usr/bin/rackboot" --version >/dev/null 2>&1 || true
# The shipped defaults must be a valid rackboot config (files named in it exist only on the host).
if ! "$rb" check-config "$root/etc/rackboot/rackboot.toml" >"$work/check.log" 2>&1; then
  if grep -v 'does not exist' "$work/check.log" | grep -q ': .*: '; then
    cat "$work/check.log" >&2; die "the image's rackboot.toml is not valid"
  fi
fi

# iPXE binaries (pinned, sha256-checked by fetch-ipxe.sh; cached)
"$repo/boot-assets/fetch-ipxe.sh" "$cache/ipxe" >/dev/null
cp "$cache"/ipxe/tftp/* "$root/usr/share/rackboot/assets/tftp/"

# kernel modules, in dependency order
: > "$root/etc/rackboot/modules.order"
for m in $MODULES; do
  deps=$(modprobe -d "$kdir" -S "$KVER" --show-depends "$m" 2>/dev/null) || { log "warning: no module $m in $kpkg"; continue; }
  echo "$deps" | awk '$1 == "insmod" {print $2}' | while read -r ko; do
    rel=${ko#"$kdir/lib/modules/$KVER/"}
    grep -qxF "$rel" "$root/etc/rackboot/modules.order" && continue
    install -D -m 0644 "$ko" "$root/lib/modules/$KVER/$rel"
    echo "$rel" >> "$root/etc/rackboot/modules.order"
  done
done
nmod=$(wc -l < "$root/etc/rackboot/modules.order")

built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cat > "$root/etc/rackboot/image.env" <<EOF
IMAGE_NAME='$IMAGE_NAME'
IMAGE_OVERLAY='$overlay'
IMAGE_BUILT='$built'
DATA_LABEL='$DATA_LABEL'
ESP_LABEL='$ESP_LABEL'
EOF
cat > "$root/etc/os-release" <<EOF
NAME="rackboot appliance"
ID=rackboot
VERSION_ID="${rb_version#rackboot }"
PRETTY_NAME="rackboot appliance ($overlay, $rb_version)"
EOF

case "$COMPRESSION" in
  gzip) compress=(gzip -6 -n) ;;
  zstd) command -v zstd >/dev/null || die "zstd not installed"; compress=(zstd -q -10 -T0) ;;
  *) die "unknown compression $COMPRESSION" ;;
esac
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | "${compress[@]}") > "$work/initrd.img"
t_initrd=$(took "$t")

# --- unified kernel image -----------------------------------------------------------------------
t=$(now)
printf '%s' "$CMDLINE" > "$work/cmdline.txt"
# Section addresses: after the stub's own sections (which end below 0x1A000), then the kernel at
# 32 MiB and the initrd right after it, 1 MiB aligned.
ksize=$(stat -c %s "$VMLINUZ")
initrd_vma=$(( (0x2000000 + ksize + 0xFFFFF) / 0x100000 * 0x100000 ))
objcopy \
  --add-section .osrel="$root/etc/os-release" --change-section-vma .osrel=0x20000 \
  --add-section .cmdline="$work/cmdline.txt" --change-section-vma .cmdline=0x30000 \
  --add-section .linux="$VMLINUZ" --change-section-vma .linux=0x2000000 \
  --add-section .initrd="$work/initrd.img" --change-section-vma .initrd="$(printf '0x%x' "$initrd_vma")" \
  "$STUB" "$work/rackboot.efi"
t_uki=$(took "$t")

# --- ESP (FAT32 via mtools) ---------------------------------------------------------------------
t=$(now)
uki_size=$(stat -c %s "$work/rackboot.efi")
[ $((uki_size + 4 * 1048576)) -lt $((ESP_MIB * 1048576)) ] || die "UKI ($uki_size bytes) does not fit a ${ESP_MIB} MiB ESP"
truncate -s "${ESP_MIB}M" "$work/esp.img"
mformat -i "$work/esp.img" -F -v "$ESP_LABEL" ::
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT ::/rackboot
mcopy -i "$work/esp.img" "$work/rackboot.efi" ::/EFI/BOOT/BOOTX64.EFI
while IFS=$'\t' read -r dest src; do
  [ -f "$here/$src" ] || die "image.toml names $src, which does not exist"
  mcopy -o -i "$work/esp.img" "$here/$src" "::$dest"
done < "$work/esp.files"
printf 'image %s, overlay %s, built %s\n%s\nkernel %s (%s)\n' \
  "$IMAGE_NAME" "$overlay" "$built" "$rb_version" "$KVER" "$kpkg $kver_pkg" > "$work/image-info.txt"
mcopy -i "$work/esp.img" "$work/image-info.txt" ::/rackboot/image-info.txt

# --- data partition (ext4, populated without mounting) ------------------------------------------
mkdir -p "$work/data/rackboot" "$work/data/log"
chmod 0700 "$work/data/rackboot"
cat > "$work/data/README" <<EOF
rackboot appliance data partition (label $DATA_LABEL). rackboot/ is rackboot's data dir (inventory
store, admin-token, assets/); log/ holds rackboot.log and its rotations. Re-flashing only the ESP
(partition 1) keeps all of this.
EOF
truncate -s "${DATA_MIB}M" "$work/data.img"
mke2fs -q -F -t ext4 -L "$DATA_LABEL" -E root_owner=0:0 -d "$work/data" "$work/data.img"

# --- GPT disk -----------------------------------------------------------------------------------
esp_start=2048
esp_sectors=$((ESP_MIB * 2048))
data_start=$((esp_start + esp_sectors))
data_sectors=$((DATA_MIB * 2048))
disk=$out/rackboot.img
rm -f "$disk"
truncate -s $(( (data_start + data_sectors) * 512 + 1048576 )) "$disk"
sfdisk -q "$disk" <<EOF
label: gpt
start=$esp_start, size=$esp_sectors, type=U, name="ESP"
start=$data_start, size=$data_sectors, type=0FC63DAF-8483-4772-B2BA-1F5D7B0A5E94, name="$DATA_LABEL"
EOF
dd if="$work/esp.img" of="$disk" bs=1M seek=$((esp_start / 2048)) conv=notrunc,sparse status=none
dd if="$work/data.img" of="$disk" bs=1M seek=$((data_start / 2048)) conv=notrunc,sparse status=none
cp "$work/rackboot.efi" "$out/rackboot.efi"
rm -f "$out/rackboot.qcow2"
qemu-img convert -O qcow2 "$disk" "$out/rackboot.qcow2"
t_disk=$(took "$t")

# --- report -------------------------------------------------------------------------------------
hsize() { numfmt --to=iec --suffix=B "$1"; }
initrd_size=$(stat -c %s "$work/initrd.img")
{
  echo "image:     $IMAGE_NAME, overlay $overlay ($OVERLAY_DESC), built $built"
  echo "rackboot:  $rb_version ($rb, stripped)"
  echo "kernel:    $KVER ($kpkg $kver_pkg), $nmod modules"
  echo "cmdline:   $CMDLINE"
  echo "initramfs: $(hsize "$initrd_size") ($COMPRESSION)"
  echo "uki:       $(hsize "$uki_size")"
  echo "partitions: ESP ${ESP_MIB} MiB (FAT32 '$ESP_LABEL'), data ${DATA_MIB} MiB (ext4 '$DATA_LABEL')"
  echo "timings:   kernel ${t_kernel}s, initramfs ${t_initrd}s, uki ${t_uki}s, disk+qcow2 ${t_disk}s, total $(took "$t_start")s"
} > "$out/build-info.txt"
cat "$out/build-info.txt"
for f in rackboot.img rackboot.qcow2 rackboot.efi; do
  printf '%s: %s  (%s, %s on disk)\n' "$prog" "$out/$f" "$(hsize "$(stat -c %s "$out/$f")")" \
    "$(du -h "$out/$f" | cut -f1)"
done

#!/bin/sh
# OpenIPMI ipmi_sim chassis_control program wiring the simulated BMC to a QEMU VM.
# lan.conf: chassis_control "<this script> <dir> 0x20"; ipmi_sim appends "get|set parm [val]...".
# <dir>/vm.env defines TAP, MAC, UUID and optionally DISK (a raw image file), FIRMWARE=uefi (OVMF
# with its native PXE client instead of SeaBIOS + the iPXE ROM; NVRAM kept in <dir>/vars.fd) and
# MEM (MiB, default 512), INBAND_IPMI=host:port (an in-band KCS interface wired to ipmi_sim's
# VM serial port, so the guest's /dev/ipmi0 talks to the same BMC). QEMU runs in the caller's network namespace (the one ipmi_sim runs in,
# which holds the tap). Also driven by redfish-bridge.py for the Redfish BMC.
D=$1; shift
. "$D/vm.env"
echo "$(date +%T.%N) $*" >> "$D/chassis.log"
running() { [ -f "$D/vm.pid" ] && kill -0 "$(cat "$D/vm.pid")" 2>/dev/null; }
vm_on() {
  running && return 0
  rm -f "$D/vm.pid"
  case "$(cat "$D/boot" 2>/dev/null || echo default)" in disk|hd) order=c ;; *) order=n ;; esac
  disk=""; [ -n "${DISK:-}" ] && disk="-drive file=$DISK,format=raw,if=none,id=d0 -device virtio-blk-pci,drive=d0,bootindex=2"
  fw=""; rom=""
  if [ "${FIRMWARE:-bios}" = uefi ]; then
    [ -f "$D/vars.fd" ] || cp /usr/share/OVMF/OVMF_VARS_4M.fd "$D/vars.fd"
    fw="-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd -drive if=pflash,format=raw,unit=1,file=$D/vars.fd"
    rom=",romfile="
  fi
  inband=""
  if [ -n "${INBAND_IPMI:-}" ]; then
    inband="-chardev socket,id=ipmi0,host=${INBAND_IPMI%:*},port=${INBAND_IPMI##*:},reconnect=2 -device ipmi-bmc-extern,chardev=ipmi0,id=bmc0 -device isa-ipmi-kcs,bmc=bmc0"
  fi
  setsid -f qemu-system-x86_64 -accel tcg -machine q35 -m "${MEM:-512}" -display none -nodefaults \
    -uuid "$UUID" -boot "$order" -pidfile "$D/vm.pid" -monitor "unix:$D/vm.mon,server,nowait" \
    -chardev "file,id=s0,path=$D/serial.log,append=on" -serial chardev:s0 $fw $inband \
    -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no" \
    -device "virtio-net-pci,netdev=n0,mac=$MAC,bootindex=1$rom" $disk </dev/null >>"$D/qemu.log" 2>&1
  for _ in 1 2 3 4 5 6 7 8 9 10; do [ -s "$D/vm.pid" ] && break; sleep 0.1; done
}
vm_off() {
  # The VM is off only once QEMU has exited (it holds the disk image's write lock): wait for
  # it, and kill it hard if it lingers.
  running || { rm -f "$D/vm.pid"; return 0; }
  pid=$(cat "$D/vm.pid")
  kill "$pid"
  i=0; while running && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  if running; then kill -9 "$pid"; i=0; while running && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done; fi
  rm -f "$D/vm.pid"
}
monitor() { python3 -c "import socket,time;s=socket.socket(socket.AF_UNIX);s.connect('$D/vm.mon');time.sleep(0.1);s.recv(4096);s.send(b'$1\n');time.sleep(0.2)"; }
mc=$1; op=$2; shift 2
case $op in
  get) for p in "$@"; do
         case $p in
           power) if running; then echo "power:1"; else echo "power:0"; fi ;;
           boot) echo "boot:$(cat "$D/boot" 2>/dev/null || echo default)" ;;
           *) echo "Invalid parameter: $p"; exit 1 ;;
         esac
       done ;;
  set) while [ $# -ge 2 ]; do
         p=$1; v=$2; shift 2
         case $p in
           boot) echo "$v" > "$D/boot" ;;
           power) if [ "$v" = 1 ]; then vm_on; else vm_off; fi ;;
           reset) [ "$v" = 1 ] && running && monitor system_reset ;;
           shutdown) [ "$v" = 1 ] && running && monitor system_powerdown ;;
           identify) shift ;;
           *) echo "Invalid parameter: $p"; exit 1 ;;
         esac
       done ;;
  *) echo "Unknown operation: $op"; exit 1 ;;
esac
exit 0

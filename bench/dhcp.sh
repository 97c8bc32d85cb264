#!/usr/bin/env bash
# ProxyDHCP: offers/s and DISCOVER→OFFER delay for a PXE DISCOVER burst (perfdhcp, relayed, arch 7)
# against rackboot and against dnsmasq in proxy mode, same segment, same run. Prints a markdown table.
source "$(dirname "$0")/lib.sh"
pair
VC=$(printf 'PXEClient:Arch:00007:UNDI:003000' | xxd -p | tr -d '\n')
run_perf() { # rate → prints "sent received avg_ms max_ms"
  ip netns exec ${P}c perfdhcp -4 -l eth0 -r "$1" -p 5 -R 100000 -x i -o 93,0007 -o 60,$VC -o 94,010300 10.98.0.2 2>&1 \
  | python3 -c '
import sys,re
t=sys.stdin.read()
sec=t.split("***Rate statistics***")[0]
d=t.split("DISCOVER-OFFER")[1] if "DISCOVER-OFFER" in t else ""
g=lambda k,s: (re.search(k+r":\s*([0-9.]+)",s) or [0,"0"])[1]
print(g("sent packets",d), g("received packets",d), g("avg delay",d) or "0", g("max delay",d) or "0")'
}
RES=()
for target in rackboot dnsmasq; do
  if [ $target = rackboot ]; then
    mkdir -p $WORK/dhcp-assets/tftp
    bg ip netns exec ${P}s "$BIN" serve --interface eth0 --advertise-addr 10.98.0.2 --data-dir $WORK/dhcp-data \
       --assets-dir $WORK/dhcp-assets --admin-listen 127.0.0.1:8080 --boot-http-listen 10.98.0.2:50042 --tftp-listen off --log-level warn
    sleep 1
  else
    cat > $WORK/dnsmasq-proxy.conf <<CONF
port=0
interface=eth0
bind-interfaces
dhcp-range=10.98.0.0,proxy,255.255.255.0
dhcp-match=set:ipxe,175
pxe-service=tag:!ipxe,x86PC,"BIOS",undionly.kpxe
pxe-service=tag:!ipxe,x86-64_EFI,"UEFI",ipxe.efi
quiet-dhcp
CONF
    bg ip netns exec ${P}s dnsmasq --keep-in-foreground --conf-file=$WORK/dnsmasq-proxy.conf --log-facility=$WORK/dnsmasq.log --user=root --group=root --pid-file=$WORK/dnsmasq.pid
    sleep 1
  fi
  for rate in 1000 5000 10000; do
    read -r sent recv avg max < <(run_perf $rate)
    RES+=("$target $rate $sent $recv $avg $max")
  done
  kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'
done
echo "| target | offered rate (/s) | DISCOVERs sent | OFFERs received | offers/s | avg delay (ms) | max delay (ms) |"
echo "|---|---|---|---|---|---|---|"
declare -A OPS
for r in "${RES[@]}"; do
  set -- $r
  ops=$(python3 -c "print(round($4/5))")
  OPS[$1-$2]=$ops
  echo "| $1 | $2 | $3 | $4 | $ops | $5 | $6 |"
done
echo
for rate in 1000 5000 10000; do
  echo "- at $rate/s offered: rackboot/dnsmasq offers-per-second ratio = $(ratio ${OPS[rackboot-$rate]} ${OPS[dnsmasq-$rate]})"
done

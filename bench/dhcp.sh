#!/usr/bin/env bash
# ProxyDHCP: offers/s and DISCOVER→OFFER delay for relayed PXE DISCOVERs (arch 7) against rackboot
# and against dnsmasq in proxy mode, same segment, same run. Two generators: perfdhcp (ISC's, up to
# ~30 k/s here) at DHCP_RATES, and rackboot-dhcp-load (ours, open loop, 1,000 machines) at
# LOAD_RATES to find each server's ceiling. Prints markdown tables.
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
RATES=${DHCP_RATES:-1000 5000 10000}
LOAD_RATES=${LOAD_RATES:-20000 40000 80000 160000 240000}
LOAD=${DHCP_LOAD_BIN:-$ROOT/target/release/rackboot-dhcp-load}
[ -x "$LOAD" ] || cargo build --release -q -p rackboot-fleet --bin rackboot-dhcp-load
LRES=()
# With rackboot-dhcp-load the server runs on core 0 and the generator on core 1 (the same for
# both servers), so the ceiling is one core's worth of server, not a share fought over.
PIN_SERVER="" PIN_LOAD=""
if [ "$(nproc)" -ge 2 ]; then PIN_SERVER="taskset -c 0"; PIN_LOAD="taskset -c 1"; fi
cpu_ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
# UDP datagrams a namespace's sockets dropped because their receive buffer was full.
rcvbuf_drops() { ip netns exec $1 awk '/^Udp:/{if(!n){n=split($0,k);next} for(i=1;i<=n;i++) if(k[i]=="RcvbufErrors") print $i}' /proc/net/snmp; }
RES=()
# DHCP_ROUNDS rounds (default 3), the servers taking turns (order reversed every round); each
# table shows the median of every column over the rounds, and each round's offers/s.
DROUNDS=${DHCP_ROUNDS:-3}
for round in $(seq $DROUNDS); do
order="rackboot dnsmasq"; [ $((round % 2)) = 0 ] && order="dnsmasq rackboot"
for target in $order; do
  if [ $target = rackboot ]; then
    mkdir -p $WORK/dhcp-assets/tftp
    rm -rf $WORK/dhcp-data # every round starts from an empty inventory
    bg ip netns exec ${P}s $PIN_SERVER "$BIN" serve --interface eth0 --advertise-addr 10.98.0.2 --data-dir $WORK/dhcp-data \
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
    bg ip netns exec ${P}s $PIN_SERVER dnsmasq --keep-in-foreground --conf-file=$WORK/dnsmasq-proxy.conf --log-facility=$WORK/dnsmasq.log --user=root --group=root --pid-file=$WORK/dnsmasq.pid
    sleep 1
  fi
  for rate in $RATES; do
    read -r sent recv avg max < <(run_perf $rate)
    RES+=("$target $rate $sent $recv $avg $max")
  done
  spid=${PIDS[-1]}
  for rate in $LOAD_RATES; do
    c0=$(cpu_ticks $spid); ds0=$(rcvbuf_drops ${P}s); dc0=$(rcvbuf_drops ${P}c)
    out=$(ip netns exec ${P}c $PIN_LOAD "$LOAD" --server 10.98.0.2 --relay 10.98.0.50 --rate $rate --seconds 5 --clients 1000)
    c1=$(cpu_ticks $spid); ds=$(( $(rcvbuf_drops ${P}s) - ds0 )); dc=$(( $(rcvbuf_drops ${P}c) - dc0 ))
    v() { echo "$out" | sed -n "s/^$1=//p"; }
    # Server CPU (user + system, all threads) per 1,000 offers, in ms.
    cpu=$(python3 -c "t=($c1-$c0)*1000/$(getconf CLK_TCK); o=$(v offers); print(f'{t*1000/o:.1f}' if o else 'n/a')")
    LRES+=("$target $rate $(v sent) $(v offers) $(v offers_per_s) $(v lost) $(v delay_p50_ms) $(v delay_p99_ms) $(v delay_max_ms) $cpu $ds $dc")
  done
  kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'
done
done
# Lines "target rate v…" of every round → per (target, rate), in first-seen order: the median of
# each value column, then the values of column EACH (1-based among the values) round by round.
agg() { # EACH < lines
  python3 -c '
import sys, statistics
each = int(sys.argv[1]) - 1
rows = {}
for line in sys.stdin:
    f = line.split()
    if len(f) > 2:
        rows.setdefault((f[0], f[1]), []).append(f[2:])
def med(col):
    v = [float(x) for x in col if x.replace(".", "", 1).isdigit()]
    if not v:
        return "n/a"
    m = statistics.median(v)
    if all("." not in x for x in col):  # counts: whole, or halfway between two rounds
        return str(int(m)) if m == int(m) else f"{m:.1f}"
    return f"{m:.3f}"
for (t, r), runs in rows.items():
    cols = list(zip(*runs))
    print(t, r, *[med(c) for c in cols], ",".join(x[each] for x in runs))' "$1"
}
echo "| target | offered rate (/s) | DISCOVERs sent | OFFERs received | offers/s | avg delay (ms) | max delay (ms) | offers/s, each round |"
echo "|---|---|---|---|---|---|---|---|"
declare -A OPS
while read -r t rate sent recv avg max each; do
  ops=$(python3 -c "print(round($recv/5))")
  OPS[$t-$rate]=$ops
  echo "| $t | $rate | $sent | $recv | $ops | $avg | $max | $(python3 -c "print(', '.join(str(round(int(x)/5)) for x in '$each'.split(',')))") |"
done < <(printf '%s\n' "${RES[@]}" | agg 2)
echo
for rate in $RATES; do
  echo "- at $rate/s offered: rackboot/dnsmasq offers-per-second ratio = $(ratio ${OPS[rackboot-$rate]} ${OPS[dnsmasq-$rate]})"
done
echo
echo "Medians of $DROUNDS rounds, the servers taking turns (order reversed every round)."
echo
echo "rackboot-dhcp-load (open loop, 5 s per rate, 1,000 machines; medians of $DROUNDS rounds, taking turns):"
echo
echo "| target | offered rate (/s) | DISCOVERs sent | OFFERs received | offers/s | lost | p50 delay (ms) | p99 delay (ms) | max delay (ms) | server CPU per 1,000 offers (ms) | dropped by the server's full socket | dropped by the generator's full socket | offers/s, each round |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
declare -A CAP CPU
while read -r -a f; do
  set -- "${f[@]}"
  echo "| $1 | $2 | $3 | $4 | $5 | $6 | $7 | $8 | $9 | ${10} | ${11} | ${12} | ${13//,/, } |"
  ops=${5%.*}
  [ "${CAP[$1]:-0}" -ge "$ops" ] || CAP[$1]=$ops
  CPU[$1-$2]=${10}
done < <(printf '%s\n' "${LRES[@]}" | agg 3)
echo
echo "The generator sends and receives in batches of 64 (sendmmsg/recvmmsg) with a 64 MiB receive buffer, so that a lost offer is the server's: the last column should stay 0."
echo
echo "- ceiling (most offers/s at any offered rate; server on core 0, generator on core 1): rackboot ${CAP[rackboot]}, dnsmasq ${CAP[dnsmasq]}; ratio = $(ratio ${CAP[rackboot]} ${CAP[dnsmasq]})"
for rate in $LOAD_RATES; do
  echo "- at $rate/s offered: offers per server CPU-second, rackboot/dnsmasq = $(ratio ${CPU[dnsmasq-$rate]} ${CPU[rackboot-$rate]})"
done

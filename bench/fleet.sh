#!/usr/bin/env bash
# Boot storm: rackboot-fleet (simulated BIOS/UEFI/HTTP-boot/iPXE machines on one wire) boots N
# machines at once through (a) rackboot (ProxyDHCP + TFTP + boot HTTP) and (b) the reference
# stack: dnsmasq in proxy mode (pxe-service + its TFTP) + nginx serving the same files. In both
# cases dnsmasq is the address-only site DHCP server on the segment, as in tests/src/lib.rs Lab.
# Same segment, same run. Prints markdown; writes per-run CSVs and a PNG next to the report.
#
# Env: FLEET_SIZES ("100 500 1000"), FLEET_MIX, FLEET_KERNEL_MB / FLEET_INITRD_MB (synthetic
# agent images, default 2 + 2), FLEET_STACKS ("rackboot dnsmasq"; also "hybrid": rackboot's
# ProxyDHCP + TFTP with nginx serving the boot HTTP URLs, which isolates the HTTP server from the
# arrival pattern the DHCP/TFTP stages create), FLEET_OUT (dir for CSV/PNG), FLEET_STAMP (file
# name prefix), FLEET_BIN, FLEET_WIRE ("packet": the simulator reads a veth end with an AF_PACKET
# socket and gets the servers' TCP bursts as GSO super-frames; "tap": a TAP device, where the
# kernel segments every frame first), FLEET_HTTP_WINDOW_KIB (each machine's TCP receive window,
# default 256 on the packet wire, 16 on a TAP), FLEET_THREADS (packet wire: simulator threads, one veth each; default 2),
# FLEET_ROUNDS (storms per size and stack, in turns; default 5: the ratios compare medians).
source "$(dirname "$0")/lib.sh"
FLEET=${FLEET_BIN:-$ROOT/target/release/rackboot-fleet}
SIZES=${FLEET_SIZES:-100 500 1000}
MIX=${FLEET_MIX:-bios,efi7,efi9,http16,ipxe}
KERNEL_MB=${FLEET_KERNEL_MB:-2}
INITRD_MB=${FLEET_INITRD_MB:-2}
STACKS=${FLEET_STACKS:-rackboot dnsmasq}
WIRE=${FLEET_WIRE:-packet}
WINDOW_KIB=${FLEET_HTTP_WINDOW_KIB:-$([ "$WIRE" = tap ] && echo 16 || echo 256)}
THREADS=${FLEET_THREADS:-2}
CORES=$(nproc)
OUT=${FLEET_OUT:-$ROOT/bench/results}
STAMP=${FLEET_STAMP:-$(date -u +%Y-%m-%dT%H%MZ)}
W=$WORK/fleet; A=$W/assets; WWW=$W/www
mkdir -p "$W" "$OUT" "$A/tftp/x86_64" "$A/agent" "$WWW/ipxe"
SW=${P}sw SITE=${P}site APPL=${P}appl
SRV=10.97.0.2 HTTP=10.97.0.2:50042

# --- the segment: bridge in $SW, site DHCP host, appliance host, the fleet's wire --------------
# The kernel's ARP table is global across namespaces (gc_thresh3 = 1024 by default): one
# appliance talking to 1,000 machines needs more. Raised for the run, restored on exit.
GC_OLD=$(for i in 1 2 3; do sysctl -n net.ipv4.neigh.default.gc_thresh$i; done | xargs)
# The site DHCP server (dnsmasq, address only; not what is measured) overflowed its default
# 208 KiB socket buffer when 1,000 DISCOVERs arrive at once, and the firmware gave up on some
# machines after its retries. dnsmasq has no buffer option and net.core.rmem_default is not
# per namespace here: it is raised (to rmem_max, at most 4 MiB) for the run, for every socket
# of both stacks alike, and restored on exit.
RMEM_OLD=$(sysctl -n net.core.rmem_default)
RMEM_RUN=$(sysctl -n net.core.rmem_max); [ "$RMEM_RUN" -le 4194304 ] || RMEM_RUN=4194304
# A veth hands frames to its peer through the per-CPU backlog (netdev_max_backlog, 1000 by
# default): the servers' bursts to 1,000 machines need more room (as the TAP got txqueuelen).
BACKLOG_OLD=$(sysctl -n net.core.netdev_max_backlog)
restore_gc() { set -- $GC_OLD; sysctl -qw net.ipv4.neigh.default.gc_thresh1=$1 net.ipv4.neigh.default.gc_thresh2=$2 net.ipv4.neigh.default.gc_thresh3=$3 net.core.rmem_default=$RMEM_OLD net.core.netdev_max_backlog=$BACKLOG_OLD; }
trap 'restore_gc; cleanup' EXIT
sysctl -qw net.ipv4.neigh.default.gc_thresh1=4096 net.ipv4.neigh.default.gc_thresh2=8192 net.ipv4.neigh.default.gc_thresh3=16384
[ "$RMEM_RUN" -gt "$RMEM_OLD" ] && sysctl -qw net.core.rmem_default=$RMEM_RUN
[ "$BACKLOG_OLD" -lt 50000 ] && sysctl -qw net.core.netdev_max_backlog=50000
for ns in $SW $SITE $APPL; do
  ip netns add $ns; NSS+=($ns); ip -n $ns link set lo up
  ip netns exec $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
# The boot server host's TCP congestion control, for both stacks: FLEET_TCP_CC (default cubic,
# Debian's default and rackboot's http.tcp_congestion). This machine's own default may differ:
# with bbr, each of a storm's 1,000 downloads is paced at its share of the link, in packets of 2
# or 3 segments, and the simulator, which shares the cores, reads 3 to 4 times as many frames
# (session 15). The largest storm is repeated under the machine's default afterwards
# (FLEET_HOST_CC_ROUNDS, default 3; 0 skips it), where rackboot's sockets keep cubic.
HOST_CC=$(sysctl -n net.ipv4.tcp_congestion_control)
set_cc $APPL ${FLEET_TCP_CC:-cubic}; CC=$CC_NOW
ip -n $SW link add br0 type bridge stp_state 0 forward_delay 0
ip -n $SW link set br0 up
# The segment's switch is a plain L2 bridge: no iptables/arptables on bridged frames, which this
# kernel's built-in br_netfilter otherwise runs on every frame (about a tenth of the boot server's
# CPU in a storm, the same for both stacks). The switch namespace's own setting only.
if [ "${FLEET_BRIDGE_NF:-0}" = 0 ]; then
  for t in iptables ip6tables arptables; do
    ip netns exec $SW sysctl -qw net.bridge.bridge-nf-call-$t=0 2>/dev/null || true
  done
fi
attach() { # ns addr
  ip link add ${1}a type veth peer name ${1}b
  ip link set ${1}a netns $1; ip link set ${1}b netns $SW
  ip -n $1 link set ${1}a name eth0
  ip -n $SW link set ${1}b master br0 up
  ip -n $1 addr add $2/21 dev eth0; ip -n $1 link set eth0 up
}
attach $SITE 10.97.0.1
attach $APPL $SRV
if [ "$WIRE" = tap ]; then
  ip -n $SW tuntap add dev fleet0 mode tap
  ip -n $SW link set fleet0 txqueuelen 50000
  ip -n $SW link set fleet0 master br0 up
  WIRE_ARGS=(--tap fleet0)
else
  ifs=()
  for i in $(seq 0 $((THREADS - 1))); do
    ip -n $SW link add fleet$i type veth peer name fleet${i}b
    ip -n $SW link set fleet${i}b master br0 up
    ip -n $SW link set fleet$i up
    # TCP bursts reach the simulator as GSO super-frames (it reads them whole), but a UDP GSO
    # send (rackboot's TFTP windows) is cut into its datagrams here, as a NIC would on the wire:
    # the simulated firmware reads one TFTP block per datagram.
    ip netns exec $SW ethtool -K fleet${i}b tx-udp-segmentation off
    ifs+=(fleet$i)
  done
  WIRE_ARGS=(--packet "$(IFS=,; echo "${ifs[*]}")")
fi

# --- the files both stacks serve ------------------------------------------------------------------
cp -f /usr/lib/ipxe/undionly.kpxe /usr/lib/ipxe/ipxe.efi $A/tftp/
cp -f /usr/lib/ipxe/ipxe.efi $A/tftp/x86_64/ipxe.efi
mkimg() { [ "$(stat -c %s "$1" 2>/dev/null)" = $(($2 * 1048576)) ] || head -c $(($2 * 1048576)) /dev/urandom > "$1"; }
mkimg $A/agent/vmlinuz "$KERNEL_MB"
mkimg $A/agent/initramfs.cpio.gz "$INITRD_MB"
ln -sfn $A $WWW/assets; ln -sfn $A/tftp $WWW/tftp

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
now() { date +%s.%N; }
# Where a stack's CPU went: seconds per thread name (digits dropped), over every thread of PIDs.
thread_cpu() { python3 -c '
import os, re, sys, collections
t, c = os.sysconf("SC_CLK_TCK"), collections.Counter()
for p in sys.argv[1:]:
    try: tasks = os.listdir(f"/proc/{p}/task")
    except OSError: continue
    for k in tasks:
        try:
            name = open(f"/proc/{p}/task/{k}/comm").read().strip()
            f = open(f"/proc/{p}/task/{k}/stat").read().rsplit(")", 1)[1].split()
        except OSError: continue
        c[re.sub(r"[0-9]+$", "N", name)] += (int(f[11]) + int(f[12])) / t
print(", ".join(f"{n} {s:.2f} s" for n, s in c.most_common() if s >= 0.01) or "-")' "$@" 2>/dev/null; }
cpu_s() { python3 -c 'import os,sys; t=os.sysconf("SC_CLK_TCK"); print(round(sum(sum(int(x) for x in open(f"/proc/{p}/stat").read().rsplit(")",1)[1].split()[11:13]) for p in sys.argv[1:])/t,1))' "$@" 2>/dev/null || echo 0; }
rss_kb() { local t=0; for p in "$@"; do t=$((t + $(awk -v k="$KEY" '$1==k":"{print $2}' /proc/$p/status 2>/dev/null || echo 0))); done; echo $t; }
# UDP datagrams a namespace's sockets dropped because their receive buffer was full.
udp_drops() { ip netns exec $1 awk '/^Udp:/{if(!n){n=split($0,k);next} for(i=1;i<=n;i++) if(k[i]=="RcvbufErrors") print $i}' /proc/net/snmp; }
# TCP segments a namespace retransmitted (a frame lost on the way to the simulator costs one).
# The boot server host's TCP counters over a run (nstat's absolute values before and after).
tcp_report() { # before after → one sentence
  python3 - "$1" "$2" <<'PY'
import sys
def rd(f):
    d = {}
    for l in open(f):
        p = l.split()
        if len(p) > 1 and p[0][:1].isalpha() and p[1].isdigit():
            d[p[0]] = int(p[1])
    return d
a, b = rd(sys.argv[1]), rd(sys.argv[2])
g = lambda k: b.get(k, 0) - a.get(k, 0)
pk = g("IpOutRequests") - g("UdpOutDatagrams")
per = f"{g('TcpOutSegs') / pk:.1f}" if pk > 0 else "n/a"
print(f"boot server host: {g('TcpRetransSegs')} TCP segments retransmitted ({g('TcpExtTCPLossProbes')} tail-loss probes, "
      f"{g('TcpExtTCPTimeouts')} timeouts), {g('TcpOutSegs')} segments sent in {pk} packets ({per} per packet), "
      f"{g('TcpExtListenOverflows')} connections refused by a full accept queue; "
      f"{g('UdpOutDatagrams')} UDP datagrams sent (DHCP, TFTP), {g('UdpInDatagrams')} received")
PY
}
# CPU time the hypervisor gave to other guests (steal, all CPUs), in jiffies: a storm is CPU-bound
# here, so a round with much steal is slow for reasons outside both stacks.
steal() { awk '/^cpu /{print $9}' /proc/stat; }
# Frames the veth/TAP in front of the simulator dropped (TAP: queue full; veth: backlog full).
wire_drops() { ip netns exec $SW sh -c 'cat /sys/class/net/fleet[0-9]*/statistics/tx_dropped /sys/class/net/fleet[0-9]*/statistics/rx_dropped' | awk '{t+=$1} END {print t+0}'; }
http_up() { ip netns exec $APPL curl -sf -o /dev/null "http://$HTTP/ipxe/init.ipxe"; }

site_dhcp() { # tag → starts dnsmasq (address only) in $SITE; sets SITE_PID
  cat > $W/site.conf <<CONF
port=0
interface=eth0
bind-interfaces
except-interface=lo
dhcp-range=10.97.1.0,10.97.7.250,255.255.248.0,1h
dhcp-lease-max=10000
# Leases in memory only: rewriting a 1,000-line lease file on every ACK makes dnsmasq the
# bottleneck of the storm (its socket overflows), and the site server is not what is measured.
leasefile-ro
dhcp-authoritative
no-ping
${FLEET_DHCP_LOG:-quiet-dhcp}
CONF
  bg ip netns exec $SITE dnsmasq --keep-in-foreground --conf-file=$W/site.conf --pid-file=$W/site-$1.pid \
     --log-facility=$W/site-$1.log --user=root --group=root
  SITE_PID=$!
}

start_rackboot() { # tag [boot-http-listen] → STACK_PIDS
  rm -rf $W/data-$1
  printf '[boot]\nagent_cmdline = "console=ttyS0"\n' > $W/rackboot.toml
  bg ip netns exec $APPL "$BIN" serve --config $W/rackboot.toml --interface eth0 --advertise-addr $SRV \
     --data-dir $W/data-$1 --assets-dir $A --admin-listen 127.0.0.1:8080 --boot-http-listen ${2:-$HTTP} \
     --tftp-listen $SRV:69 --log-level warn
  STACK_PIDS=($!)
}

start_nginx() { # → NGINX_PID (master; the workers are its children)
  cat > $W/nginx.conf <<CONF
daemon off;
worker_processes 2;
pid $W/nginx.pid;
error_log $W/nginx-error.log warn;
events { worker_connections 4096; }
http { access_log off; sendfile on; tcp_nopush on; default_type application/octet-stream;
  server { listen $HTTP; root $WWW; } }
CONF
  bg ip netns exec $APPL nginx -c $W/nginx.conf
  NGINX_PID=$!
}

# rackboot answers DHCP and TFTP and advertises $HTTP, but its own boot HTTP listens on loopback:
# nginx on $HTTP serves the machines (the same files and the scripts rackboot rendered).
start_hybrid() { # tag → STACK_PIDS
  start_rackboot $1 127.0.0.1:${HTTP#*:}
  local r=${STACK_PIDS[0]}
  start_nginx
  STACK_PIDS=($r $NGINX_PID)
}

start_reference() { # tag → STACK_PIDS (dnsmasq proxy + TFTP, nginx master + workers)
  cat > $W/proxy.conf <<CONF
port=0
interface=eth0
bind-interfaces
except-interface=lo
dhcp-range=10.97.0.0,proxy,255.255.248.0
dhcp-match=set:ipxe,175
dhcp-pxe-vendor=PXEClient,HTTPClient
pxe-service=tag:!ipxe,x86PC,"BIOS",undionly.kpxe
pxe-service=tag:!ipxe,X86-64_EFI,"UEFI",ipxe.efi
pxe-service=tag:!ipxe,BC_EFI,"UEFI BC",ipxe.efi
pxe-service=tag:ipxe,x86PC,"iPXE",http://$HTTP/ipxe/init.ipxe
pxe-service=tag:ipxe,X86-64_EFI,"iPXE",http://$HTTP/ipxe/init.ipxe
dhcp-match=set:efihttp,option:client-arch,16
dhcp-boot=tag:efihttp,http://$HTTP/tftp/x86_64/ipxe.efi
dhcp-option-force=tag:efihttp,60,HTTPClient
enable-tftp
tftp-root=$A/tftp
tftp-max=2048
${FLEET_DHCP_LOG:-quiet-dhcp}
CONF
  bg ip netns exec $APPL dnsmasq --keep-in-foreground --conf-file=$W/proxy.conf --pid-file=$W/proxy-$1.pid \
     --log-facility=$W/proxy-$1.log --user=root --group=root
  local d=$!
  start_nginx
  STACK_PIDS=($d $NGINX_PID)
}

# --- the physical bound (issue 12), measured in this run ---------------------------------------------
# Loopback bandwidth: one TCP stream of 1 GiB over 127.0.0.1 in the appliance namespace, best of 3.
# RTT: ping from the appliance to the site DHCP host across the segment's bridge (avg of 200).
# Round trips: the most any machine of the mix needs in sequence (lower bound, from the simulator's
# firmware parameters): DHCP 2 (+1 ProxyDHCP on 4011 for PXE ROMs and EDK2), TFTP OACK + one per
# block (lock-step, blksize 1432) or per window (EDK2 blksize 1468, windowsize 4), then as iPXE DHCP
# 2, init.ipxe, DHCP 2, boot.ipxe, kernel, initrd; an HTTP GET is 2 (connect, request) plus one
# per receive window (the simulator's, FLEET_HTTP_WINDOW_KIB). The storm cannot finish before
# max(bytes moved ÷ loopback bandwidth, round trips × RTT).
LO_BPS=$(ip netns exec $APPL python3 - <<'PY'
import socket, threading, time
N = 1 << 30
buf = b"\0" * (1 << 20)
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
port = srv.getsockname()[1]
def sink():
    c, _ = srv.accept(); b = bytearray(1 << 20)
    while c.recv_into(b):
        pass
best = 0
for _ in range(3):
    t = threading.Thread(target=sink); t.start()
    s = socket.create_connection(("127.0.0.1", port)); t0 = time.time(); sent = 0
    while sent < N:
        s.sendall(buf); sent += len(buf)
    s.close(); t.join(); best = max(best, N / (time.time() - t0))
print(int(best))
PY
)
RTT_MS=$(ip netns exec $APPL ping -c 200 -i 0.005 -q 10.97.0.1 | awk -F/ '/^(rtt|round-trip)/{print $5}')
ROUND_TRIPS=$(WINDOW=$((WINDOW_KIB * 1024)) python3 - "$MIX" $(stat -c %s $A/tftp/undionly.kpxe) $(stat -c %s $A/tftp/ipxe.efi) $((KERNEL_MB * 1048576)) $((INITRD_MB * 1048576)) <<'PY'
import math, os, sys
mix = sys.argv[1].split(","); kpxe, efi, kernel, initrd = map(int, sys.argv[2:6])
http = lambda size: 2 + math.ceil(size / int(os.environ["WINDOW"]))
edk2 = 2 + 1 + 1 + math.ceil(math.ceil(efi / 1468) / 4)
first = {"bios": 2 + 1 + 1 + math.ceil(kpxe / 1432), "efi7": edk2, "efi9": edk2,
         "http16": 2 + http(efi), "ipxe": 0}
ipxe = 2 + http(1) + 2 + http(1) + http(kernel) + http(initrd)
print(max(first.get(k, 0) for k in mix) + ipxe)
PY
)

# The scripts nginx serves: what rackboot renders for an unknown machine (same URLs, same port).
start_rackboot render
for _ in $(seq 100); do http_up && break; sleep 0.1; done
ip netns exec $APPL curl -sf "http://$HTTP/ipxe/init.ipxe" > $WWW/ipxe/init.ipxe
ip netns exec $APPL curl -sf "http://$HTTP/ipxe/boot.ipxe?uuid=f1ee7000-0000-0000-0000-000000000000&mac=52-54-00-00-00-01&arch=x86_64" > $WWW/ipxe/boot.ipxe
stop ${STACK_PIDS[0]}

declare -A R
# One storm: `storm N STACK ROUND`. Round 1 keeps everything (the tables, per-stage details, CSV
# and plot); later rounds only add their all-booted time to T, for the median below.
declare -A T ST PK CS
storm() { # N STACK ROUND SEED [SET: a suffix keeping these rounds apart, e.g. another CC]
    local n=$1 stack=$2 round=$3 seed=$4 key=$2-$1${5:-}
    local tag=$stack-$n csv="$OUT/$STAMP-fleet-$stack-$n.csv"
    if [ "$round" -gt 1 ] || [ -n "${5:-}" ]; then tag=$key-r$round; csv=$W/$tag.csv; fi
    # Same addresses, new MACs each run: forget the last run's neighbours (a stale ARP entry
    # sends replies to a MAC that is gone until the kernel re-probes, seconds later).
    for ns in $SITE $APPL; do ip -n $ns neigh flush all; done
    site_dhcp $tag
    # Cold start: from the stack's launch to serving both HTTP and TFTP, by a poller (0.5 ms
    # period) running, in the boot server host, before the launch (bench/ready.py).
    ip netns exec $APPL python3 $ROOT/bench/ready.py $HTTP $SRV:69 > $W/$tag.ready & local rp=$!
    for _ in $(seq 500); do grep -q armed $W/$tag.ready 2>/dev/null && break; sleep 0.01; done
    t0=$(now)
    case $stack in
      rackboot) start_rackboot $tag ;;
      hybrid) start_hybrid $tag ;;
      *) start_reference $tag ;;
    esac
    wait $rp || true
    local up; up=$(sed -n 2p $W/$tag.ready)
    cold=$([ -n "$up" ] && python3 -c "print(f'{($up - $t0) * 1000:.1f}')" || echo -)
    for _ in $(seq 300); do http_up && [ -s $W/site-$tag.pid ] && break; sleep 0.02; done
    sleep 1
    KEY=VmRSS; idle=$(rss_kb "${STACK_PIDS[@]}" $(pgrep -P "${STACK_PIDS[-1]}" || true))
    if [ -n "${FLEET_PCAP:-}" ]; then # debugging: DHCP/TFTP-control traffic on the bridge
      bg ip netns exec $SW tcpdump -U -i br0 -s 400 -w $W/$tag.pcap "${FLEET_PCAP_FILTER:-arp or (udp and (port 67 or port 68 or port 4011 or port 69))}" 2>/dev/null; sleep 1
    fi
    wd0=$(wire_drops); st0=$(steal); ip netns exec $APPL nstat -az > $W/$tag.nstat0
    sd0=$(udp_drops $SITE); ad0=$(udp_drops $APPL)
    ip netns exec $SW "$FLEET" "${WIRE_ARGS[@]}" --http-window-kib $WINDOW_KIB --clients $n --mix "$MIX" --seed $seed \
       --csv "$csv" --summary $W/$tag.sum --label "$stack, $n clients" > $W/$tag.md 2>&1 || true
    stolen=$(python3 -c "import os; print(f'{($(steal) - $st0) / os.sysconf(\"SC_CLK_TCK\"):.2f}')")
    echo "wire ($WIRE): $(( $(wire_drops) - wd0 )) frames dropped on the way to the simulator; $(ip netns exec $APPL nstat -az > $W/$tag.nstat1; tcp_report $W/$tag.nstat0 $W/$tag.nstat1); UDP receive-buffer drops: site DHCP host $(( $(udp_drops $SITE) - sd0 )), boot server host $(( $(udp_drops $APPL) - ad0 ))" >> $W/$tag.md
    if [ $stack = rackboot ]; then # what the operator sees afterwards: every machine discovered?
      known=$(ip netns exec $APPL curl -sf "http://127.0.0.1:8080/api/v1/machines" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d if isinstance(d, list) else d.get("machines", [])))' || echo "?")
      echo "inventory: $known of $n machines recorded by rackboot when the last one had booted" >> $W/$tag.md
      # The server's own count of TFTP datagrams sent again (timeouts and tail probes).
      ip netns exec $APPL curl -sf "http://127.0.0.1:8080/metrics" | awk '
        /^rackboot_tftp_retransmitted_datagrams_total /{r=$2} /^rackboot_tftp_tail_probes_total /{p=$2}
        /^rackboot_tftp_coalesced_datagrams_total /{g=$2}
        END{printf "rackboot TFTP: %d datagrams sent again, %d of them tail probes; %d sent in UDP GSO sends of a window\n", r, p, g}' >> $W/$tag.md || true
    fi
    KEY=VmHWM; peak=$(rss_kb "${STACK_PIDS[@]}" $(pgrep -P "${STACK_PIDS[-1]}" || true))
    cpu=$(cpu_s "${STACK_PIDS[@]}" $(pgrep -P "${STACK_PIDS[-1]}" || true))
    echo "server CPU by thread: $(thread_cpu "${STACK_PIDS[@]}" $(pgrep -P "${STACK_PIDS[-1]}" || true))" >> $W/$tag.md
    [ -n "${FLEET_PCAP:-}" ] && stop ${PIDS[-1]}
    for p in "${STACK_PIDS[@]}"; do stop $p; done
    stop $SITE_PID
    get() { awk -F= -v k="$1" '$1==k{print $2}' $W/$tag.sum; }
    T[$key]="${T[$key]:-} $(get all_booted_s)"
    ST[$key]="${ST[$key]:-} $stolen"
    CS[$key]="${CS[$key]:-} $cold"
    # TCP segments per packet the boot server host sent (its GSO/TSO size): the HTTP stage's
    # cost for the simulator, which reads one frame per packet.
    PK[$key]="${PK[$key]:-} $(grep -o '([0-9.n/a]* per packet)' $W/$tag.md | head -1 | tr -d '(' | cut -d' ' -f1)"
    if [ "$round" -gt 1 ] || [ -n "${5:-}" ]; then return 0; fi
    R[$tag]="$(get booted) $(get failed) $(get unfinished) $(get all_booted_s) $(get boot_p50_s) $(get boot_p99_s) $cold $idle $peak $cpu $(get bytes) $(get cpu_s) $(get retries)"
    cp $W/$tag.md "$OUT/$STAMP-fleet-$tag.md"
}
# Each size's storm runs ROUNDS times per stack, the stacks in turns (reversed every other round):
# one storm's time swings by tens of percent on a shared VM (bench/results, session 11).
ROUNDS=${FLEET_ROUNDS:-5}
for round in $(seq "$ROUNDS"); do
  seed=10
  order=$STACKS; [ $((round % 2)) = 0 ] && order=$(echo $STACKS | tr ' ' '\n' | tac | xargs)
  for n in $SIZES; do
    seed=$((seed + 1)) # the same machines (MACs) for every stack and round at one size
    for stack in $order; do storm "$n" "$stack" "$round" "$seed"; done
  done
done

# The largest storm again under this machine's own default congestion control, when it differs.
big=$(echo $SIZES | tr ' ' '\n' | sort -n | tail -1)
HOST_ROUNDS=${FLEET_HOST_CC_ROUNDS:-3}
[ "$HOST_CC" = "$CC" ] && HOST_ROUNDS=0
if [ "$HOST_ROUNDS" -gt 0 ]; then
  ip netns exec $APPL sysctl -qw net.ipv4.tcp_congestion_control=$HOST_CC
  for round in $(seq "$HOST_ROUNDS"); do
    order=$STACKS; [ $((round % 2)) = 0 ] && order=$(echo $STACKS | tr ' ' '\n' | tac | xargs)
    for stack in $order; do storm "$big" "$stack" "$round" 99 "-$HOST_CC"; done
  done
  ip netns exec $APPL sysctl -qw net.ipv4.tcp_congestion_control=$CC
fi

# --- report -----------------------------------------------------------------------------------------
echo "Boot server host: TCP congestion control $CC for both stacks (this machine's default: $HOST_CC; see the end of this section). Segment bridge: net.bridge.bridge-nf-call-iptables = $(ip netns exec $SW sysctl -n net.bridge.bridge-nf-call-iptables 2>/dev/null || echo 'n/a (no br_netfilter)') in its namespace (FLEET_BRIDGE_NF)."
echo
echo "Fleet: \`$(basename "$FLEET") ${WIRE_ARGS[*]} --http-window-kib $WINDOW_KIB --clients N --mix $MIX\` (all power on at once; firmware retry 4/8/16/32 s); agent images ${KERNEL_MB} MiB kernel + ${INITRD_MB} MiB initrd, iPXE NBPs from Debian's ipxe package. Segment 10.97.0.0/21: dnsmasq address-only site DHCP (10.97.0.1), boot server 10.97.0.2; ARP gc_thresh raised to 4096/8192/16384 and net.core.rmem_default to $((RMEM_RUN / 1024)) KiB (from $((RMEM_OLD / 1024)) KiB) for the run."
echo
echo "| stack | clients | booted | failed | unfinished | all booted (s) | boot p50 (s) | boot p99 (s) | cold start (ms) | idle RSS (MiB) | peak RSS (MiB) | server CPU (s) | simulator CPU (s) | client retries (DHCP + TFTP) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for n in $SIZES; do for stack in $STACKS; do
  set -- ${R[$stack-$n]}
  label=$stack; [ $stack = dnsmasq ] && label="dnsmasq proxy+TFTP, nginx"
  [ $stack = hybrid ] && label="rackboot proxy+TFTP, nginx HTTP"
  echo "| $label | $n | $1 | $2 | $3 | $4 | $5 | $6 | $7 | $(python3 -c "print(round($8/1024,1))") | $(python3 -c "print(round($9/1024,1))") | ${10} | ${12:-?} | ${13:-?} |"
done; done
echo
echo "Client retries: datagrams the simulated machines sent again after a firmware timeout (4, 8, 16, 32 s) in DHCP and TFTP stages. Each is a lost DISCOVER, REQUEST or reply, or a stalled TFTP transfer; 0 means none happened."
echo
echo "The simulator shares the machine's 2 cores with the servers and the kernel: in T seconds they have 2T core-seconds between them, of which the simulator's column is its own part."
echo
echo "| stack | clients | all booted, each of $ROUNDS rounds (s) | median (s) | CPU stolen by the host, each round (s) | TCP segments per packet sent by the boot server host, each round | cold start, each round (ms) | cold start, median (ms) |"
echo "|---|---|---|---|---|---|---|---|"
# Median of a round list, or "-" when any round did not boot every machine.
median() { python3 -c 'import sys,statistics as s; v=sys.argv[1:]; print("-" if not v or "-" in v else f"{s.median(map(float, v)):.3f}")' "$@"; }
declare -A MED COLD
for n in $SIZES; do for stack in $STACKS; do
  MED[$stack-$n]=$(median ${T[$stack-$n]:-})
  COLD[$stack-$n]=$(median ${CS[$stack-$n]:-})
  echo "| $stack | $n | $(echo ${T[$stack-$n]:-} | sed 's/ /, /g') | ${MED[$stack-$n]} | $(echo ${ST[$stack-$n]:-} | sed 's/ /, /g') | $(echo ${PK[$stack-$n]:-} | sed 's/ /, /g') | $(echo ${CS[$stack-$n]:-} | sed 's/ /, /g') | ${COLD[$stack-$n]} |"
done; done
echo
echo "Round 1 is the run every other table here describes; the stacks took turns in each round (their order reversed every other round). CPU stolen: time the hypervisor ran other guests on this VM's CPUs during the storm (steal in /proc/stat, all CPUs); the storm is CPU-bound, so a round with much steal is slow for reasons outside both stacks."
echo
for n in $SIZES; do
  ra=${MED[rackboot-$n]:-}; rb=${MED[dnsmasq-$n]:-}
  [ -n "$ra" ] && [ -n "$rb" ] || continue
  echo "- $n clients: all-booted time ratio dnsmasq+nginx / rackboot (medians of $ROUNDS rounds) = $( [ "$ra" != - ] && [ "$rb" != - ] && ratio $rb $ra || echo 'n/a (not all booted in every round)')"
done
ca=$(median $(for n in $SIZES; do echo ${CS[rackboot-$n]:-}; done)); cb=$(median $(for n in $SIZES; do echo ${CS[dnsmasq-$n]:-}; done))
if [ "$ca" != - ] && [ "$cb" != - ]; then
  echo "- cold start to serving HTTP and TFTP, dnsmasq+nginx / rackboot (medians of every launch above: rackboot $ca ms, dnsmasq+nginx $cb ms) = $(ratio $cb $ca)"
elif [[ " $STACKS " == *" rackboot "* && " $STACKS " == *" dnsmasq "* ]]; then
  echo "- cold start ratio: n/a (a launch was not seen serving within 10 s: \"-\" above)"
fi
echo
echo "Cold start: from the stack's launch (its data directory new each time) until it answers both an HTTP GET of /ipxe/init.ipxe and a TFTP read request, from a poller in the boot server host started before the launch (bench/ready.py, 0.5 ms period)."
echo
echo "Physical bound (measured in this run): loopback TCP $(python3 -c "print(round($LO_BPS/1e9,2))") GB/s, RTT across the segment $RTT_MS ms, at least $ROUND_TRIPS round trips in sequence for the slowest machine kind of the mix (see bench/fleet.sh); bound = max(bytes ÷ bandwidth, round trips × RTT); goal: all booted within 1.2× the bound."
echo
echo "| stack | clients | bytes moved (MB) | bytes ÷ loopback bandwidth (s) | round trips × RTT (s) | physical bound (s) | all booted (s) | all booted ÷ bound | CPU work ÷ $CORES cores (s) | all booted ÷ CPU work | all booted, median of $ROUNDS rounds (s) | median ÷ bound |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for n in $SIZES; do for stack in $STACKS; do
  set -- ${R[$stack-$n]}
  python3 - "$stack" "$n" "${11:-0}" "$LO_BPS" "$ROUND_TRIPS" "$RTT_MS" "$4" "${10:-0}" "${12:-0}" "$CORES" "${MED[$stack-$n]:--}" <<'PY'
import sys
stack, n, nbytes, bps, rts, rtt, done, srv_cpu, sim_cpu, cores, med = sys.argv[1:12]
nbytes, bps, rts, rtt = int(nbytes), float(bps), int(rts), float(rtt)
a, b = nbytes / bps, rts * rtt / 1000
bound = max(a, b)
booted = done not in ("-", "")
ratio = f"{float(done) / bound:.1f}" if booted and bound > 0 else "n/a (not all booted)"
work = (float(srv_cpu) + float(sim_cpu)) / int(cores)
wratio = f"{float(done) / work:.2f}" if booted and work > 0 else "n/a"
mratio = f"{float(med) / bound:.1f}" if med not in ("-", "") and bound > 0 else "n/a"
print(f"| {stack} | {n} | {nbytes / 1e6:.1f} | {a:.3f} | {b:.3f} | {bound:.3f} | {done} | {ratio} | {work:.2f} | {wratio} | {med} | {mratio} |")
PY
done; done
echo
echo "CPU work is the server's and the simulator's CPU time (the two CPU columns above) spread over the machine's $CORES cores: the storm cannot end sooner on this machine, because the simulated clients run on the same cores (kernel work in softirq threads is in neither column, so this is a lower bound). A ratio near 1 means the run was CPU-bound, not waiting on timers or the network."
echo
# (Not when RACKBOOT_BIN is a wrapper script, as in bench/hot-functions.sh.)
if readelf -h "$BIN" > /dev/null 2>&1; then
echo "- rackboot binary: $(( $(stat -c %s "$BIN") / 1048576 )) MiB ($(stat -c %s "$BIN") bytes, release with debug=1); stripped: $(( $(strip -o $W/rackboot.stripped "$BIN" && stat -c %s $W/rackboot.stripped) / 1048576 )) MiB"
hot=$ROOT/src/cli/link/hot-functions.txt
if [ -s "$hot" ] && nm -S --defined-only "$BIN" > $W/rackboot.nm 2>/dev/null; then
  echo "- code layout: $(python3 - "$hot" $W/rackboot.nm <<'PY'
import sys
want = set(open(sys.argv[1]).read().split())
spans = {}
for line in open(sys.argv[2]):
    f = line.split()
    if len(f) == 4 and f[3] in want:
        a = int(f[0], 16)
        spans[f[3]] = (a, a + int(f[1], 16))
size = sum(z - a for a, z in spans.values())
span = max(z for _, z in spans.values()) - min(a for a, _ in spans.values()) if spans else 0
print(f"{len(spans)} of the {len(want)} functions start-up and a storm run (src/cli/link/hot-functions.txt) "
      f"are in this binary: {size // 1024} KiB of code within {span // 1024} KiB of .text")
PY
) (src/cli/build.rs places them together; make hot-functions lists them again)"
fi
fi
echo
for n in $SIZES; do for stack in $STACKS; do
  echo "<details><summary>$stack, $n clients: per-stage latency</summary>"; echo
  sed -n '1,/^simulator:/p;/^wire/p;/^server CPU by thread/p' $W/$stack-$n.md; echo; echo "</details>"; echo
done; done

if [ "$HOST_ROUNDS" -gt 0 ]; then
  echo "Under this machine's default congestion control ($HOST_CC), $big clients: the boot server host's default for both stacks; rackboot's boot HTTP sockets keep cubic (its http.tcp_congestion), nginx's take $HOST_CC."
  echo
  echo "| stack | clients | all booted, each of $HOST_ROUNDS rounds (s) | median (s) | CPU stolen by the host, each round (s) | TCP segments per packet sent by the boot server host, each round |"
  echo "|---|---|---|---|---|---|"
  for stack in $STACKS; do
    k=$stack-$big-$HOST_CC; MED[$k]=$(median ${T[$k]:-})
    echo "| $stack | $big | $(echo ${T[$k]:-} | sed 's/ /, /g') | ${MED[$k]} | $(echo ${ST[$k]:-} | sed 's/ /, /g') | $(echo ${PK[$k]:-} | sed 's/ /, /g') |"
  done
  echo
  ra=${MED[rackboot-$big-$HOST_CC]:-}; rb=${MED[dnsmasq-$big-$HOST_CC]:-}
  if [ -n "$ra" ] && [ -n "$rb" ]; then
    echo "- $big clients, host default $HOST_CC: all-booted time ratio dnsmasq+nginx / rackboot (medians of $HOST_ROUNDS rounds) = $( [ "$ra" != - ] && [ "$rb" != - ] && ratio $rb $ra || echo 'n/a (not all booted in every round)')"
    echo
  fi
fi

# Boot completion over time, both stacks, largest fleet (gnuplot).
png="$OUT/$STAMP-fleet-$big.png"
plots=()
for stack in $STACKS; do
  f="$OUT/$STAMP-fleet-$stack-$big.csv"
  awk -F, 'NR>1 && $4=="booted"{print $5}' "$f" | sort -n | awk '{print $1, NR}' > $W/$stack.dat
  plots+=("'$W/$stack.dat' using 1:2 with steps lw 2 title '$stack'")
done
gnuplot <<GP
set terminal pngcairo size 900,500 noenhanced
set output '$png'
set title 'Boot storm: $big machines powered on at once — machines booted over time'
set xlabel 'seconds since power-on'; set ylabel 'machines booted'; set key left top; set grid
plot $(IFS=,; echo "${plots[*]}")
GP
echo "![boot completion, $big clients]($(basename "$png"))"

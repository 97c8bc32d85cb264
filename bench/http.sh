#!/usr/bin/env bash
# Boot HTTP: wrk against boot.ipxe, a 64 MiB asset with 50 connections and a 2 MiB one with 400, against nginx
# serving the same files, same run, loopback inside a private netns.
source "$(dirname "$0")/lib.sh"
ip netns add ${P}h; NSS+=(${P}h); ip -n ${P}h link set lo up
# Both servers under one TCP congestion control: rackboot sets cubic on its boot HTTP sockets
# (http.tcp_congestion), nginx takes the namespace's default, set to the same here (this
# machine's own default may differ, e.g. bbr, which paces every connection).
set_cc ${P}h ${HTTP_TCP_CC:-cubic}; CC=$CC_NOW
X="ip netns exec ${P}h"
A=$WORK/http-assets; mkdir -p $A/tftp $A/www
[ -s $A/big.bin ] || head -c 67108864 /dev/urandom > $A/big.bin
# nginx serves the very files rackboot serves (hard links: one inode, one page cache). A copy
# made here had a different page-cache layout from the original (fresh `cp` vs an old
# `head -c`), and nginx served its copy up to twice as fast with the same code paths.
share() { ln -f "$1" "$2" 2>/dev/null || cp -f "$1" "$2"; }
share $A/big.bin $A/www/big.bin
# A kernel-sized file for many concurrent downloads (a boot storm's kernel stage).
[ -s $A/kernel.bin ] || head -c 2097152 /dev/urandom > $A/kernel.bin
share $A/kernel.bin $A/www/kernel.bin
bg $X "$BIN" serve --tftp-listen off --dhcp-mode off --boot-http-listen 127.0.0.1:50043 --admin-listen 127.0.0.1:8082 \
   --data-dir $WORK/http-data --assets-dir $A --log-level warn
RB_PID=${PIDS[-1]} # `ip netns exec` execs the server: the same PID
Q='uuid=11111111-2222-3333-4444-555555555551&mac=52-54-00-99-00-10&arch=x86_64'
$X bash -c "for i in \$(seq 50); do curl -sf -o /dev/null 'http://127.0.0.1:50043/ipxe/boot.ipxe?$Q' && break; sleep 0.1; done"
$X curl -s "http://127.0.0.1:50043/ipxe/boot.ipxe?$Q" > $A/www/boot.ipxe
# keepalive_requests: nginx closes a connection after 1,000 requests by default and h2load's
# fixed-rate run does not reconnect, so nginx's row covered only the first 4 of its 10 s.
cat > $WORK/nginx.conf <<CONF
daemon off;
worker_processes 2;
pid $WORK/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http { access_log off; sendfile on; tcp_nopush on; default_type application/octet-stream; keepalive_requests 1000000;
  server { listen 127.0.0.1:8090; root $A/www; } }
CONF
bg $X nginx -c $WORK/nginx.conf
NGINX_PID=${PIDS[-1]}
sleep 1
# Server CPU (user + system, all threads; nginx: master and workers) in clock ticks.
server_ticks() { # rackboot|nginx
  local pids=$RB_PID t=0
  [ "$1" = nginx ] && pids="$NGINX_PID $(pgrep -P $NGINX_PID | tr '\n' ' ' || true)"
  for p in $pids; do t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat))); done
  echo $t
}
# µs of server CPU per request over a wrkrun: ticks before, ticks after, req/s, seconds.
cpu_per_req() { python3 -c "import os,sys; b,a,r,s=map(float,sys.argv[1:]); print(round((a-b)/os.sysconf('SC_CLK_TCK')*1e6/(r*s),1) if r else 'n/a')" "$@"; }
wrkrun() { # url conns → "req/s p50_ms p99_ms MB/s"
  $X wrk -t2 -c$2 -d8s --latency "$1" | python3 -c '
import sys,re
t=sys.stdin.read()
def ms(v):
    m=re.match(r"([0-9.]+)(us|ms|s)",v); x=float(m[1]); return x/1000 if m[2]=="us" else x*1000 if m[2]=="s" else x
rps=re.search(r"Requests/sec:\s*([0-9.]+)",t)[1]
# the distribution lines only ("  50%  1.23ms"; a "+/- Stdev" of "71.50%" must not match)
p50=ms(re.search(r"^\s+50%\s+(\S+)",t,re.M)[1]); p99=ms(re.search(r"^\s+99%\s+(\S+)",t,re.M)[1])
tr=re.search(r"Transfer/sec:\s*([0-9.]+)(\w+)",t); mb=float(tr[1])*{"B":1e-6,"KB":1e-3,"MB":1,"GB":1e3}[tr[2]]
print(rps, round(p50,3), round(p99,3), round(mb,1))'
}
HTTP_ROUNDS=${HTTP_ROUNDS:-3}
# Boot-script rows: HTTP_ROUNDS rounds, the servers taking turns (order reversed every round);
# each column is the median over the rounds, and each round's figure is listed.
med() { python3 -c "import sys,statistics; v=[float(x) for x in sys.argv[1:]]; m=statistics.median(v) if v else None; print('n/a' if m is None else round(m,3))" "$@"; }
declare -A W P
for i in $(seq $HTTP_ROUNDS); do
  order="rackboot nginx"; [ $((i % 2)) = 0 ] && order="nginx rackboot"
  for who in $order; do
    url="http://127.0.0.1:8090/boot.ipxe"; [ $who = rackboot ] && url="http://127.0.0.1:50043/ipxe/boot.ipxe?$Q"
    c0=$(server_ticks $who)
    read -r r p50 p99 _ < <(wrkrun "$url" 32)
    c1=$(server_ticks $who)
    W[$who]="${W[$who]:-}$r $p50 $p99 $(cpu_per_req $c0 $c1 $r 8);"
  done
done
# column n of every round of who → values
wcol() { echo "${W[$1]}" | tr ';' '\n' | awk -v n=$2 'NF {print $n}' | xargs; }
r1=$(med $(wcol rackboot 1)); p50a=$(med $(wcol rackboot 2)); p99a=$(med $(wcol rackboot 3)); u1=$(med $(wcol rackboot 4))
r2=$(med $(wcol nginx 1)); p50b=$(med $(wcol nginx 2)); p99b=$(med $(wcol nginx 3)); u2=$(med $(wcol nginx 4))
echo "TCP congestion control, both servers: $CC (this machine's default: $(sysctl -n net.ipv4.tcp_congestion_control))."
echo
echo "Boot-script rows: medians of $HTTP_ROUNDS rounds, the servers taking turns (order reversed every round)."
echo
echo "| boot script, 32 connections | req/s | p50 (ms) | p99 (ms) | server CPU per request (µs) | req/s, each round |"
echo "|---|---|---|---|---|---|"
echo "| rackboot /ipxe/boot.ipxe (rendered per request) | $r1 | $p50a | $p99a | $u1 | $(wcol rackboot 1 | sed 's/ /, /g') |"
echo "| nginx, the same script as a static file | $r2 | $p50b | $p99b | $u2 | $(wcol nginx 1 | sed 's/ /, /g') |"
echo
# Fixed offered rate (issue 12: boot.ipxe p99 < 2 ms at 5,000 req/s): h2load over HTTP/1.1,
# 25 connections × 200 req/s each for 10 s, latency of every request from its log file.
RATE_CONNS=${RATE_CONNS:-25}; RATE_PER_CONN=${RATE_PER_CONN:-200}; RATE_SECS=${RATE_SECS:-10}
raterun() { # url → "offered achieved p50_ms p99_ms p999_ms max_ms non2xx"
  rm -f $WORK/h2load.log
  $X h2load --h1 -c $RATE_CONNS --rps $RATE_PER_CONN -D $RATE_SECS --warm-up-time 1 \
     --log-file $WORK/h2load.log "$1" >/dev/null
  python3 - $WORK/h2load.log $((RATE_CONNS*RATE_PER_CONN)) <<'PY'
import sys
rows=[l.split('\t') for l in open(sys.argv[1]) if l.strip()]
lat=sorted(int(r[2])/1000 for r in rows)
start=min(int(r[0]) for r in rows); end=max(int(r[0])+int(r[2]) for r in rows)
bad=sum(1 for r in rows if not r[1].startswith('2'))
q=lambda p: lat[min(len(lat)-1,int(p*len(lat)))]
print(sys.argv[2], round(len(rows)/((end-start)/1e6)), round(q(.5),3), round(q(.99),3), round(q(.999),3), round(lat[-1],3), bad)
PY
}
# rackboot's own view of the same requests: its boot.ipxe histogram (time from the parsed request
# to the rendered answer) over the rate rounds, to tell the server's share of the latency from
# the client's and the machine's.
script_hist() { $X curl -sf http://127.0.0.1:8082/metrics | awk '/^rackboot_boot_script_seconds_sum /{s=$2} /^rackboot_boot_script_seconds_count /{c=$2} /^rackboot_boot_script_seconds_bucket\{le="0.0005"\} /{b=$2} END {print s+0, c+0, b+0}'; }
read -r hs0 hc0 hb0 < <(script_hist)
declare -A H
for i in $(seq $HTTP_ROUNDS); do
  order="rackboot nginx"; [ $((i % 2)) = 0 ] && order="nginx rackboot"
  for who in $order; do
    url="http://127.0.0.1:8090/boot.ipxe"; [ $who = rackboot ] && url="http://127.0.0.1:50043/ipxe/boot.ipxe?$Q"
    H[$who]="${H[$who]:-}$(raterun "$url");"
  done
done
hcol() { echo "${H[$1]}" | tr ';' '\n' | awk -v n=$2 'NF {print $n}' | xargs; }
o1=$(hcol rackboot 1 | cut -d' ' -f1)
row() { echo "$(med $(hcol $1 2)) | $(med $(hcol $1 3)) | $(med $(hcol $1 4)) | $(med $(hcol $1 5)) | $(med $(hcol $1 6)) | $(hcol $1 7 | tr ' ' '\n' | awk '{t+=$1} END {print t+0}') | $(hcol $1 4 | sed 's/ /, /g')"; }
q99a=$(med $(hcol rackboot 4))
echo "| boot script at a fixed rate (h2load --h1, $RATE_CONNS connections; medians of $HTTP_ROUNDS rounds, taking turns) | offered (req/s) | achieved (req/s) | p50 (ms) | p99 (ms) | p99.9 (ms) | max (ms) | non-2xx (all rounds) | p99, each round (ms) |"
echo "|---|---|---|---|---|---|---|---|---|"
echo "| rackboot /ipxe/boot.ipxe | $o1 | $(row rackboot) |"
echo "| nginx, static copy | $o1 | $(row nginx) |"
echo
echo "- boot.ipxe p99 at $o1 req/s: $q99a ms (goal < 2 ms: $(python3 -c "print('met' if float('$q99a')<2 else 'not met')"))"
read -r hs1 hc1 hb1 < <(script_hist)
echo "- rackboot's own time per boot.ipxe answer in these rounds (its \`rackboot_boot_script_seconds\` histogram: parsed request to rendered script, without the socket I/O): $(python3 -c "n=$hc1-$hc0; print(f'mean {($hs1-$hs0)/n*1e6:.1f} µs over {n:.0f} answers, {($hb1-$hb0)/n*100:.2f} % within 0.5 ms' if n > 0 else 'n/a')")"
echo
# The two download rows: HTTP_ROUNDS rounds (default 3), the servers taking turns (order reversed
# every other round: the one measured second had found the cores warmer or busier), medians
# reported. One 8 s run each swung the ratio between 0.8 and 1.2 from run to run.
median() { python3 -c "import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(round(statistics.median(v),2) if v else 'n/a')" "$@"; }
# One download row: url-path conns → "rackboot_rates nginx_rates rackboot_cpu nginx_cpu" (rates:
# comma-separated, one per round, as wrk's req/s; cpu: µs of server CPU per download, median).
rounds() { # rackboot-path nginx-path conns
  local i who rr=() nr=() rc=() nc=() c0 c1 r
  for i in $(seq $HTTP_ROUNDS); do
    for who in $([ $((i % 2)) = 1 ] && echo "rackboot nginx" || echo "nginx rackboot"); do
      c0=$(server_ticks $who)
      if [ $who = rackboot ]; then read -r r _ _ _ < <(wrkrun "http://127.0.0.1:50043$1" $3)
      else read -r r _ _ _ < <(wrkrun "http://127.0.0.1:8090$2" $3); fi
      c1=$(server_ticks $who)
      if [ $who = rackboot ]; then rr+=($r); rc+=($(cpu_per_req $c0 $c1 $r 8))
      else nr+=($r); nc+=($(cpu_per_req $c0 $c1 $r 8)); fi
    done
  done
  echo "$(IFS=,; echo "${rr[*]}") $(IFS=,; echo "${nr[*]}") $(median ${rc[@]}) $(median ${nc[@]})"
}
mb() { python3 -c "import sys; print(','.join(str(round(float(x)*float(sys.argv[1]),1)) for x in sys.argv[2].split(',')))" "$@"; }
read -r br bn bcr bcn < <(rounds /assets/big.bin /big.bin 50)
# wrk counts downloads; the 64 MiB row is in MB/s (67.108864 MB a download).
br=$(mb 67.108864 $br); bn=$(mb 67.108864 $bn)
m1=$(median ${br//,/ }); m2=$(median ${bn//,/ })
read -r kr kn d1 d2 < <(rounds /assets/kernel.bin /kernel.bin 400)
k1=$(median ${kr//,/ }); k2=$(median ${kn//,/ })
echo "Download rows: $HTTP_ROUNDS rounds of 8 s per server, taking turns (order reversed every other round); medians."
echo
echo "| download | rackboot | nginx (sendfile) | each round, rackboot | each round, nginx | server CPU per download, rackboot (µs) | nginx (µs) |"
echo "|---|---|---|---|---|---|---|"
echo "| 64 MiB asset, 50 connections (MB/s) | $m1 | $m2 | ${br//,/, } | ${bn//,/, } | $bcr | $bcn |"
echo "| 2 MiB asset, 400 connections: a storm's kernel stage (downloads/s) | $k1 | $k2 | ${kr//,/, } | ${kn//,/, } | $d1 | $d2 |"
echo
echo "- boot.ipxe throughput ratio rackboot/nginx-static: $(ratio $r1 $r2)"
echo "- boot.ipxe server CPU per request, nginx-static/rackboot (less noisy than req/s on a shared VM): $(ratio $u2 $u1)"
echo "- asset throughput ratio rackboot/nginx: $(ratio $m1 $m2)"
echo "- 64 MiB asset server CPU per download, nginx/rackboot: $(ratio $bcn $bcr)"
echo "- concurrent 2 MiB downloads ratio rackboot/nginx: $(ratio $k1 $k2)"
echo "- 2 MiB download server CPU per download, nginx/rackboot: $(ratio $d2 $d1)"

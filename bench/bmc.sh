#!/usr/bin/env bash
# BMC fleet: power status of N ipmi_sim BMCs (default 50, one config from a template each,
# distinct UDP ports) on the loopback of a private netns. rackboot's fleet poll (the server's
# PowerService, triggered by POST /api/v1/power/poll, answering when every BMC is done: at most
# bmc.max_parallel BMCs at once, one command in flight per BMC, bmc.min_interval_ms kept) against
# `ipmitool -I lanplus -C 3 ... chassis power status` run per BMC in sequence. Then session
# setup latency for one BMC (rackboot bmc vs ipmitool, hyperfine). Every phase is captured with
# tcpdump and bench/ipmi_sessions.py counts, from the wire, how many sessions a BMC had open
# at once; a control run (4 ipmitool at once on one BMC) shows that the check sees overlaps.
source "$(dirname "$0")/lib.sh"
N=${BMC_COUNT:-50}
BASE=17000
HI=$((BASE + N - 1))
RUNS=${BMC_RUNS:-10}
ip netns add ${P}i; NSS+=(${P}i); ip -n ${P}i link set lo up
X="ip netns exec ${P}i"
D=$WORK/bmc; rm -rf "$D"; mkdir -p "$D"
SIMS=()
SESS="python3 $ROOT/bench/ipmi_sessions.py"
IPMI="ipmitool -I lanplus -C 3 -H 127.0.0.1 -U admin -P password"

# --- the BMCs ---
for i in $(seq 0 $((N - 1))); do
  s=$D/sim$i; mkdir -p $s/state
  sed "s/@NAME@/bmc$i/; s/@PORT@/$((BASE + i))/" > $s/lan.conf <<'CONF'
name "@NAME@"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 @PORT@
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  user 2 true "admin" "password" admin 10 none md2 md5 straight
CONF
  printf 'mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n' > $s/bmc.emu
  bg $X ipmi_sim -c $s/lan.conf -f $s/bmc.emu -s $s/state -n >$s/sim.log 2>&1
  SIMS+=("${PIDS[-1]}")
done
up=0
for i in $(seq 0 $((N - 1))); do
  for _ in $(seq 50); do
    $X $IPMI -p $((BASE + i)) chassis power status >/dev/null 2>&1 && { up=$((up + 1)); break; }
    sleep 0.1
  done
done
[ "$up" = "$N" ] || { echo "only $up of $N ipmi_sim instances answer" >&2; exit 1; }
rss=$(ps -o rss= -p "$(IFS=,; echo "${SIMS[*]}")" | awk '{s+=$1} END {printf "%.0f", s/NR/1024}')

capture() { # name → starts tcpdump on the netns's lo, sets CAP_PID
  rm -f $D/$1.pcap
  $X tcpdump --immediate-mode -i lo -n -s 96 -U -B 16384 -w $D/$1.pcap "udp and portrange $BASE-$HI" 2>$D/$1.tcpdump &
  CAP_PID=$!; PIDS+=($CAP_PID)
  wait_file $D/$1.pcap; sleep 0.3
}
stop_capture() { # name → JSON of ipmi_sessions.py; fails when tcpdump dropped packets
  sleep 1.2; kill -INT $CAP_PID; wait $CAP_PID 2>/dev/null || true
  if grep -q '[1-9][0-9]* packets dropped by kernel' $D/$1.tcpdump; then
    echo "tcpdump dropped packets in $1: $(cat $D/$1.tcpdump)" >&2; exit 1
  fi
  $SESS $D/$1.pcap $BASE $HI
}
j() { python3 -c "import json,sys; v=json.loads(sys.argv[1]); print(v[sys.argv[2]])" "$1" "$2"; }
hf() { # json-out, hyperfine args... → "mean stddev min max" in ms
  local out=$1; shift
  $X hyperfine -N --export-json $out "$@" >/dev/null 2>&1
  python3 -c "import json;r=json.load(open('$out'))['results'][0];print(*(round(r[k]*1000,1) for k in ('mean','stddev','min','max')))"
}

# --- ipmitool, one BMC after the other ---
cat > $D/ipmitool-all.sh <<SH
#!/bin/sh
for p in \$(seq $BASE $HI); do $IPMI -p \$p chassis power status >/dev/null || exit 1; done
SH
chmod +x $D/ipmitool-all.sh
capture ipmitool
read -r it_mean it_sd it_min it_max < <(hf $D/hf-ipmitool.json --runs 3 --warmup 1 "$D/ipmitool-all.sh")
it_wire=$(stop_capture ipmitool)

# --- rackboot: the server's fleet poll ---
ADMIN=127.0.0.1:8084
serve() { # max_parallel → starts rackboot serve with N machines, sets RB_PID and TOKEN
  local data=$D/data-$1
  printf '[bmc]\npoll_interval_secs = 0\nmax_parallel = %s\n' "$1" > $D/rackboot-$1.toml
  $X "$BIN" serve --config $D/rackboot-$1.toml --data-dir $data --dhcp-mode off --tftp-listen off \
     --boot-http-listen 127.0.0.1:0 --admin-listen $ADMIN --log-level warn >$D/rackboot-$1.log 2>&1 &
  RB_PID=$!; PIDS+=($RB_PID)
  $X bash -c "for i in \$(seq 100); do curl -sf -o /dev/null http://$ADMIN/healthz && exit 0; sleep 0.1; done; exit 1"
  TOKEN=$(cat $data/admin-token)
  for i in $(seq 0 $((N - 1))); do
    $X curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
      -d "{\"name\":\"bmc$i\",\"macs\":[\"52:54:00:98:$(printf '%02x:%02x' $((i / 256)) $((i % 256)))\"],\"bmc\":{\"url\":\"ipmi://127.0.0.1:$((BASE + i))\",\"username\":\"admin\",\"password\":\"password\"}}" \
      http://$ADMIN/api/v1/machines
  done
}
stop_serve() { kill $RB_PID; wait $RB_PID 2>/dev/null || true; }
poll() { $X curl -sf -X POST -H "Authorization: Bearer $TOKEN" http://$ADMIN/api/v1/power/poll; }

declare -A rb_first rb_spaced rb_b2b rb_wire
for par in 8 $N; do
  serve $par
  capture rb$par
  rb_first[$par]=$(poll)
  [ "$(j "${rb_first[$par]}" ok)" = "$N" ] || { echo "first poll: ${rb_first[$par]}" >&2; exit 1; }
  # As the background poll runs them: each poll long after the last command to any BMC.
  rb_spaced[$par]=$(hf $D/hf-rb$par.json --runs $RUNS --warmup 1 --prepare "sleep 0.6" \
    "curl -sf -X POST -H 'Authorization: Bearer $TOKEN' http://$ADMIN/api/v1/power/poll")
  # Back to back: every BMC's next command waits for bmc.min_interval_ms (500) after its last.
  rb_b2b[$par]=$(hf $D/hf-rb$par-b2b.json --runs 5 \
    "curl -sf -X POST -H 'Authorization: Bearer $TOKEN' http://$ADMIN/api/v1/power/poll")
  last=$(poll)
  [ "$(j "$last" ok)" = "$N" ] || { echo "last poll: $last" >&2; exit 1; }
  rb_wire[$par]=$(stop_capture rb$par)
  stop_serve
done

# --- session setup latency: one process, one session, one BMC ---
read -r ss_rb_mean ss_rb_sd ss_rb_min _ < <(hf $D/hf-ss-rb.json --runs 50 --warmup 3 \
  "$BIN bmc --url ipmi://admin:password@127.0.0.1:$BASE power status")
read -r ss_it_mean ss_it_sd ss_it_min _ < <(hf $D/hf-ss-it.json --runs 50 --warmup 3 \
  "$IPMI -p $BASE chassis power status")

# --- control: 4 ipmitool at once on one BMC must show up as overlapping sessions ---
capture control
$X bash -c "for k in 1 2 3 4; do $IPMI -p $HI chassis power status >/dev/null & done; wait"
control=$(stop_capture control)

first8=$(j "${rb_first[8]}" duration_ms)
s8_mean=$(echo ${rb_spaced[8]} | cut -d' ' -f1)
sN_mean=$(echo ${rb_spaced[$N]} | cut -d' ' -f1)
echo "$N ipmi_sim BMCs (openipmi $(dpkg-query -W -f '${Version}' openipmi), ~${rss} MiB RSS each), ipmitool $(dpkg-query -W -f '${Version}' ipmitool), loopback of a private netns; rackboot with bmc.min_interval_ms 500 (default)."
echo
echo "| fleet power status, $N BMCs | mean (ms) | ± (ms) | min (ms) | max (ms) |"
echo "|---|---|---|---|---|"
echo "| ipmitool -I lanplus -C 3, one BMC after the other (3 runs) | $it_mean | $it_sd | $it_min | $it_max |"
for par in 8 $N; do
  read -r m sd mn mx <<<"${rb_spaced[$par]}"
  echo "| rackboot poll, max_parallel $par$([ $par = 8 ] && echo ' (default)'), polls ≥ 0.6 s apart ($RUNS runs, curl wall time) | $m | $sd | $mn | $mx |"
done
for par in 8 $N; do
  read -r m sd mn mx <<<"${rb_b2b[$par]}"
  echo "| rackboot poll, max_parallel $par, back to back (each BMC waits out its 500 ms interval; 5 runs) | $m | $sd | $mn | $mx |"
done
echo
r1() { python3 -c "print(round(float('$1'), 1))"; }
echo "- first poll after start (drivers created): $(r1 $first8) ms with max_parallel 8, $(r1 "$(j "${rb_first[$N]}" duration_ms)") ms with max_parallel $N (server-side duration_ms)"
echo "- fleet poll speed-up, rackboot (default max_parallel 8) vs sequential ipmitool: **$(ratio $it_mean $s8_mean)×**; with max_parallel $N: $(ratio $it_mean $sN_mean)×"
echo "- one BMC session on the wire (first request to last reply: auth capabilities, suite-17 offer refused, suite 3, RAKP 1-4, Get Chassis Status, Close Session), mean: rackboot server $(j "${rb_wire[8]}" mean_session_ms) ms (max_parallel 8), $(j "${rb_wire[$N]}" mean_session_ms) ms (max_parallel $N); ipmitool $(j "$it_wire" mean_session_ms) ms"
echo
echo "| session setup, one process and one session per run (50 runs) | mean (ms) | ± (ms) | min (ms) |"
echo "|---|---|---|---|"
echo "| rackboot bmc --url ipmi://… power status (offers suite 17, falls back to 3) | $ss_rb_mean | $ss_rb_sd | $ss_rb_min |"
echo "| ipmitool -I lanplus -C 3 … chassis power status | $ss_it_mean | $ss_it_sd | $ss_it_min |"
echo
echo "- session setup speed-up rackboot vs ipmitool: $(ratio $ss_it_mean $ss_rb_mean)×"
echo
echo "Sessions on the wire (tcpdump on the netns's lo, bench/ipmi_sessions.py):"
echo
echo "| capture | sessions | per BMC | max sessions open on one BMC | BMCs in session at once (peak) | min gap between sessions on one BMC (ms) | mean session (ms) |"
echo "|---|---|---|---|---|---|---|"
row() { echo "| $1 | $(j "$2" sessions) | $(j "$2" sessions_per_bmc_min)–$(j "$2" sessions_per_bmc_max) | $(j "$2" max_open_sessions_on_one_bmc) | $(j "$2" max_bmcs_in_session_at_once) | $(j "$2" min_gap_between_sessions_on_one_bmc_ms) | $(j "$2" mean_session_ms) |"; }
row "ipmitool sequential" "$it_wire"
for par in 8 $N; do row "rackboot polls, max_parallel $par" "${rb_wire[$par]}"; done
row "control: 4 ipmitool at once on one BMC" "$control"
echo
ok=yes
for par in 8 $N; do [ "$(j "${rb_wire[$par]}" max_open_sessions_on_one_bmc)" = 1 ] || ok=no; done
[ "$(j "$control" max_open_sessions_on_one_bmc)" -ge 2 ] && ctl=yes || ctl=no
echo "- rackboot: no BMC ever had two sessions open at once: **$ok**; the check detects overlap in the control run: $ctl"
gap=yes
for par in 8 $N; do
  python3 -c "import sys; sys.exit(0 if float('$(j "${rb_wire[$par]}" min_gap_between_sessions_on_one_bmc_ms)') >= 500 else 1)" || gap=no
done
echo "- rackboot: every BMC's next session started ≥ 500 ms (bmc.min_interval_ms) after its last one ended: **$gap**"

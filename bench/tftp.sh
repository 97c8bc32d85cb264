#!/usr/bin/env bash
# TFTP: rackboot vs tftpd-hpa (lock-step, curl) and vs atftpd (windowsize, atftp), same file,
# same client, same run, on loopback; plus 200 concurrent 1 MiB fetches.
source "$(dirname "$0")/lib.sh"
# atftpd's package replaces /usr/sbin/in.tftpd with a link to itself: bring tftpd-hpa's back.
if ! in.tftpd -V 2>&1 | grep -q tftp-hpa; then
  DEBIAN_FRONTEND=noninteractive apt-get install --reinstall -y -qq tftpd-hpa >/dev/null
fi
in.tftpd -V 2>&1 | grep -q tftp-hpa || { echo "tftpd-hpa's in.tftpd is not available" >&2; exit 1; }
# atftpd conflicts with tftpd-hpa as a Debian package: use its binary extracted from the .deb.
ATFTPD=$WORK/atftpd/usr/sbin/atftpd
if [ ! -x "$ATFTPD" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq atftpd) && dpkg-deb -x "$tmp"/atftpd_*.deb "$WORK/atftpd"
  rm -rf "$tmp"
fi
# Loopback of the root namespace (tftpd-hpa exits with status 66 inside a fresh netns).
X=""
D=$WORK/tftp-root; mkdir -p $D/tftp
[ -s $D/tftp/big.bin ] || head -c 67108864 /dev/urandom > $D/tftp/big.bin
[ -s $D/tftp/one.bin ] || head -c 1048576 /dev/urandom > $D/tftp/one.bin
# All bench clients share one address: lift the per-client transfer limit (default 8).
printf '[tftp]\nmax_transfers_per_client = 512\n' > $WORK/tftp-bench.toml
bg $X "$BIN" serve --config $WORK/tftp-bench.toml --tftp-listen 127.0.0.1:6970 --dhcp-mode off --boot-http-listen 127.0.0.1:0 --admin-listen 127.0.0.1:8081 \
   --data-dir $WORK/tftp-data --assets-dir $D --log-level warn
bg $X in.tftpd -L -a 127.0.0.1:6971 -s $D/tftp -u root
bg $X "$ATFTPD" --daemon --no-fork --bind-address 127.0.0.1 --port 6972 --user root.root --logfile /dev/null $D/tftp
sleep 1
# Each pair of servers takes turns (the order reversed every round) for TFTP_ROUNDS rounds after
# one warm-up fetch each, and the medians are compared: a slow moment of the shared VM then falls
# on both, or on one round of one, not on every run of one server.
ROUNDS=${TFTP_ROUNDS:-5}
S_RB=${PIDS[0]} S_HPA=${PIDS[1]} S_AT=${PIDS[2]}
once() { # server pid, command → "wall_s client_cpu_s server_cpu_s", or "failed"
  python3 - "$@" <<'PY'
import os, resource, shlex, subprocess, sys, time
pid, cmd = sys.argv[1], shlex.split(sys.argv[2])
tck = os.sysconf("SC_CLK_TCK")
def server():  # user + system of the server process, all its threads (None: it is gone)
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(f[11]) + int(f[12])) / tck
def client():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
s0, c0, t0 = server(), client(), time.perf_counter()
ok = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
t1, c1 = time.perf_counter(), client()
s1 = server()
print(f"{t1 - t0:.4f} {c1 - c0:.3f} {s1 - s0:.2f}" if ok and s0 is not None and s1 is not None else "failed")
PY
}
med() { python3 -c 'import sys,statistics as s; v=[float(x) for x in sys.argv[1:] if x != "failed"]; print(f"{s.median(v):.4f}" if v else "failed")' "$@"; }
col() { # n, runs… → the n-th field of each run ("failed" stays)
  local n=$1; shift; for r in "$@"; do if [ "$r" = failed ]; then echo failed; else echo $r | cut -d' ' -f$n; fi; done
}
CPU_ROWS=()
turns() { # case, rackboot command, peer pid, peer command → sets RA RB (median seconds), EA EB
  local a=() b=() r ca cb
  once $S_RB "$2" >/dev/null; once $3 "$4" >/dev/null
  for r in $(seq $ROUNDS); do
    if [ $((r % 2)) = 1 ]; then a+=("$(once $S_RB "$2")"); b+=("$(once $3 "$4")")
    else b+=("$(once $3 "$4")"); a+=("$(once $S_RB "$2")"); fi
  done
  RA=$(med $(col 1 "${a[@]}")); RB=$(med $(col 1 "${b[@]}"))
  EA=$(col 1 "${a[@]}" | xargs); EB=$(col 1 "${b[@]}" | xargs)
  # tftpd-hpa serves each transfer in a child it forks and does not wait for: its CPU is not seen.
  local sb; sb=$([ $3 = $S_HPA ] && echo "n/a" || med $(col 3 "${b[@]}"))
  CPU_ROWS+=("| $1 | $(med $(col 3 "${a[@]}")) | $(med $(col 2 "${a[@]}")) | $sb | $(med $(col 2 "${b[@]}")) |")
}
echo "| case (64 MiB) | rackboot (s) | peer | peer (s) | speed-up | each run, rackboot (s) | each run, peer (s) |"
echo "|---|---|---|---|---|---|---|"
for bs in 512 1468; do
  turns "curl, blksize $bs, lock-step (peer tftpd-hpa)" \
       "curl -s -o /dev/null --tftp-blksize $bs tftp://127.0.0.1:6970/big.bin" \
       $S_HPA "curl -s -o /dev/null --tftp-blksize $bs tftp://127.0.0.1:6971/big.bin"
  echo "| curl, blksize $bs, lock-step | $RA | tftpd-hpa | $RB | $(ratio $RB $RA)× | $EA | $EB |"
done
b_ls=$RB # tftpd-hpa, lock-step, blksize 1468 (it does not do windowsize)
for w in 8 16; do
  get="atftp -g -r big.bin -l /dev/null --option 'blksize 1468' --option 'windowsize $w' 127.0.0.1"
  turns "atftp, blksize 1468, windowsize $w (peer atftpd)" "$get 6970" $S_AT "$get 6972"
  echo "| atftp, blksize 1468, windowsize $w | $RA | atftpd | $RB | $(ratio $RB $RA)× | $EA | $EB |"
  echo "| rackboot windowsize $w vs tftpd-hpa lock-step 1468 (curl) | $RA | tftpd-hpa | $b_ls | $(ratio $b_ls $RA)× | | |"
done
echo
echo "Medians of $ROUNDS runs each after a warm-up fetch, the two servers taking turns (order reversed every round)."
echo
echo "| CPU per 64 MiB transfer, medians (s) | rackboot | its client | peer | peer's client |"
echo "|---|---|---|---|---|"
printf '%s\n' "${CPU_ROWS[@]}"
echo
echo "Server CPU: user + system of the server process, all threads (10 ms ticks; n/a for tftpd-hpa, whose forked child per transfer is not counted). Client CPU: the client process's own. rackboot's only transfer waits for each ACK awake (polling, a core to spare), so its server CPU is close to the transfer's wall time; the client's share of the wall time is what the client itself costs, the rest is the hand-off between the two processes for every window or block."
echo
conc() { # port → "seconds failures"
  local start end fails
  start=$(date +%s.%N)
  fails=$($X bash -c "seq 200 | xargs -P 200 -I{} sh -c 'curl -s -o /dev/null --tftp-blksize 1468 tftp://127.0.0.1:$1/one.bin || echo F'" | grep -c F || true)
  end=$(date +%s.%N)
  echo "$(python3 -c "print(round($end-$start,3))") $fails"
}
read -r t_rb f_rb < <(conc 6970)
read -r t_hpa f_hpa < <(conc 6971)
echo "| 200 concurrent curl fetches of a 1 MiB file | rackboot | tftpd-hpa |"
echo "|---|---|---|"
echo "| wall time (s) | $t_rb | $t_hpa |"
echo "| failed transfers | $f_rb | $f_hpa |"
echo
echo "- 200-client speed-up: $(ratio $t_hpa $t_rb)× (rackboot serves every transfer from one shared in-memory copy)"

# Loss: every 997th DATA datagram dropped (nftables, on the loopback of a namespace of its own;
# tftpd-hpa does not run in one, atftpd does), 16 MiB, atftp windowsize 8 without a `timeout`
# option, so each server's own retransmission policy decides how long a loss stalls the transfer.
L=${P}loss
ip netns add $L; NSS+=($L); ip -n $L link set lo up
ip netns exec $L nft -f - <<'NFT'
table inet loss {
  chain input {
    type filter hook input priority 0;
    udp length > 1000 numgen inc mod 997 == 0 drop
  }
}
NFT
[ -s $D/tftp/mid.bin ] || head -c 16777216 /dev/urandom > $D/tftp/mid.bin
bg ip netns exec $L "$BIN" serve --config $WORK/tftp-bench.toml --tftp-listen 127.0.0.1:6970 --dhcp-mode off --boot-http-listen 127.0.0.1:0 --admin-listen 127.0.0.1:8081 \
   --data-dir $WORK/tftp-data-loss --assets-dir $D --log-level warn
bg ip netns exec $L "$ATFTPD" --daemon --no-fork --bind-address 127.0.0.1 --port 6972 --user root.root --logfile /dev/null $D/tftp
sleep 1
# A server's recovery depends on where in a window each loss falls, and the shared counter moves
# the losses from run to run: six runs each, taken in turns, and every one reported.
LOSSY_RUNS=6
lossy_once() { # port → seconds of one fetch ("failed" if atftp reports an error)
  local t0; t0=$(date +%s.%N)
  if ip netns exec $L atftp -g -r mid.bin -l /dev/null --option 'blksize 1468' --option 'windowsize 8' 127.0.0.1 $1 >/dev/null 2>&1; then
    python3 -c "print(round($(date +%s.%N) - $t0, 3))"
  else
    echo failed
  fi
}
l_rb=(); l_at=()
for _ in $(seq $LOSSY_RUNS); do l_rb+=("$(lossy_once 6970)"); l_at+=("$(lossy_once 6972)"); done
lstat() { # what (mean|median|max|failed) runs… → value
  python3 -c "
import statistics, sys
w, runs = sys.argv[1], sys.argv[2:]
v = [float(x) for x in runs if x != 'failed']
if w == 'failed': print(len(runs) - len(v))
elif not v: print('n/a')
else: print(f'{dict(mean=statistics.mean, median=statistics.median, max=max)[w](v):.3f}')
" "$@"
}
echo
echo "| 16 MiB, atftp windowsize 8, every 997th DATA lost | rackboot | atftpd |"
echo "|---|---|---|"
for w in mean median max failed; do
  echo "| $( [ $w = max ] && echo worst || echo $w ) of $LOSSY_RUNS runs$( [ $w = failed ] || echo ' (s)') | $(lstat $w "${l_rb[@]}") | $(lstat $w "${l_at[@]}") |"
done
echo "| every run (s) | ${l_rb[*]} | ${l_at[*]} |"
echo
echo "- lossy windowed speed-up (mean time): $(ratio "$(lstat mean "${l_at[@]}")" "$(lstat mean "${l_rb[@]}")")×, worst run: $(ratio "$(lstat max "${l_at[@]}")" "$(lstat max "${l_rb[@]}")")× (rackboot resends a window at once when the client repeats its last ACK, and its retransmission timeout follows the round trip: a lost last block, which the client cannot report, is probed after twice the round trip (at least 5 ms); atftpd then waits for its own retransmission timeout, seconds)"

# Shared helpers for bench/*.sh: namespaces, PID-tracked processes, cleanup.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${RACKBOOT_BIN:-$ROOT/target/release/rackboot}
WORK=${BENCH_WORK:-$ROOT/target/bench}
mkdir -p "$WORK"
PIDS=()
NSS=()
P=rbb$$
CC_ALLOWED_OLD=
cleanup() {
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null || true; done
  for ns in "${NSS[@]:-}"; do [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true; done
  if [ -n "$CC_ALLOWED_OLD" ]; then sysctl -qw net.ipv4.tcp_allowed_congestion_control="$CC_ALLOWED_OLD" || true; fi
}
# `set_cc NS NAME`: the default TCP congestion control of namespace NS (every TCP socket of the
# servers in it, unless a server sets its own). A namespace may only take one listed in
# net.ipv4.tcp_allowed_congestion_control (global): NAME is added there for the run and the
# list restored on exit. Sets CC_NOW to the name in force (the machine's default if NAME is
# missing). Not in a subshell: the list to restore is kept in this shell.
set_cc() {
  local allowed; allowed=$(sysctl -n net.ipv4.tcp_allowed_congestion_control)
  if ! grep -qw -- "$2" /proc/sys/net/ipv4/tcp_available_congestion_control; then
    echo "congestion control $2 not in this kernel; $1 keeps the default" >&2
  else
    if ! echo " $allowed " | grep -q " $2 "; then
      [ -n "$CC_ALLOWED_OLD" ] || CC_ALLOWED_OLD=$allowed
      sysctl -qw net.ipv4.tcp_allowed_congestion_control="$allowed $2"
    fi
    ip netns exec "$1" sysctl -qw net.ipv4.tcp_congestion_control="$2"
  fi
  CC_NOW=$(ip netns exec "$1" sysctl -n net.ipv4.tcp_congestion_control)
}
trap cleanup EXIT
bg() { "$@" & PIDS+=($!); }
# Two hosts on a veth pair: server ${P}s (10.98.0.2) and client ${P}c (10.98.0.50), NIC eth0.
pair() {
  ip netns add ${P}s; ip netns add ${P}c; NSS+=(${P}s ${P}c)
  ip link add ${P}a type veth peer name ${P}b
  ip link set ${P}a netns ${P}s; ip link set ${P}b netns ${P}c
  ip -n ${P}s link set ${P}a name eth0; ip -n ${P}c link set ${P}b name eth0
  ip -n ${P}s addr add 10.98.0.2/24 dev eth0; ip -n ${P}c addr add 10.98.0.50/24 dev eth0
  for ns in ${P}s ${P}c; do ip -n $ns link set lo up; ip -n $ns link set eth0 up; done
}
wait_http() { for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
wait_file() { for _ in $(seq 100); do [ -e "$1" ] && return 0; sleep 0.1; done; return 1; }
ratio() { python3 -c "
import sys
try: a, b = float(sys.argv[1]), float(sys.argv[2])
except ValueError: a = b = 0  # a side that failed or did not run
print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }

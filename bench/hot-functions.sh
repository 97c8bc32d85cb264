#!/usr/bin/env bash
# make hot-functions: the functions of the release rackboot binary that start-up and a boot storm
# run, hottest first, into src/cli/link/hot-functions.txt, which the release link uses to place
# them together (see src/cli/build.rs). The storm is bench/fleet.sh's (200 machines by default,
# HOT_CLIENTS=N), with rackboot under callgrind, which counts every function that runs. Needs
# root (network namespaces) and valgrind. Run it again when the boot path changes: a name the
# binary no longer has is skipped, and a new function is placed as without the file.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/target/release/rackboot
W=${BENCH_WORK:-$ROOT/target/bench}/hot-functions
OUT=src/cli/link/hot-functions.txt
rm -rf "$W"; mkdir -p "$W"
# What fleet.sh starts as rackboot: the release binary under callgrind (same PID, same signals).
cat > "$W/rackboot" <<WRAP
#!/bin/sh
exec valgrind --tool=callgrind --demangle=no --callgrind-out-file="$W/callgrind.%p" "$BIN" "\$@" 2>>"$W/valgrind.log"
WRAP
chmod +x "$W/rackboot"
# The first callgrind start of a newly linked binary can outlast fleet.sh's wait for the server
# to come up (fleet.sh then stops without a storm): a second try.
# fleet.sh's first table: | rackboot | clients | booted | ...
booted() { awk -F'|' '$2 ~ /^ rackboot $/ && $4 ~ /^ [0-9]+ $/ {print $4 + 0; exit}' "$W/fleet.md"; }
ran() { runs=$(find "$W" -maxdepth 1 -name 'callgrind.*' | wc -l); [ "$runs" -ge 2 ] && [ "$(booted)" -gt 0 ] 2>/dev/null; }
for _ in 1 2; do
  rm -f "$W"/callgrind.*
  RACKBOOT_BIN=$W/rackboot FLEET_SIZES=${HOT_CLIENTS:-200} FLEET_STACKS=rackboot FLEET_ROUNDS=1 \
    FLEET_HOST_CC_ROUNDS=0 FLEET_OUT=$W bench/fleet.sh > "$W/fleet.md" 2> "$W/fleet.log" || true
  ran && break
done
if ! ran; then
  echo "hot-functions: the storm did not run under callgrind ($runs runs; see $W/fleet.log, $W/valgrind.log); $OUT unchanged" >&2
  exit 1
fi
bench/hot_functions.py "$BIN" "$W"/callgrind.* > "$W/hot-functions.txt"
mv "$W/hot-functions.txt" $OUT
echo "$OUT: $(wc -l < $OUT) functions (callgrind runs: $runs; $(booted) machines booted: $W/fleet.md)"

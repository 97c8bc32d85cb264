#!/usr/bin/env bash
# Run every fuzz target (or the ones named) for SECONDS each; print executions per target.
# Usage: fuzz/run.sh SECONDS [TARGET...]. Stable Rust is enough: libFuzzer's coverage
# instrumentation works there, only the sanitizers need nightly (hence `-s none`).
# A crash stops the run with the reproducer under fuzz/artifacts/<target>/ and exit 1.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
opts=(-s none -O --debug-assertions)
python3 seed.py
cargo fuzz build "${opts[@]}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
total=0
for t in "${targets[@]}"; do
  if ! cargo fuzz run "${opts[@]}" "$t" -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz: $t FAILED; reproduce with: (cd fuzz && cargo fuzz run ${opts[*]} $t artifacts/$t/<crash-file>)"
    exit 1
  fi
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 \2/p' "$log" | tail -n 1)
  printf 'fuzz: %-16s %12s execs in %4s s\n' "$t" "${runs% *}" "${runs#* }"
  total=$((total + ${runs% *}))
done
echo "fuzz: ${#targets[@]} targets, $total execs, no crash"

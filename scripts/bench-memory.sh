#!/usr/bin/env bash
# Peak memory of `argo-drift diff` on a 50 MB live dump (kubectl get -o yaml List), against the
# target of 3x the input size. Usage: scripts/bench-memory.sh [SIZE_MB]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb="${1:-50}"
out="target/bench-dump"
cargo build --release -q -p argo-drift-controller
cargo run --release -q -p argo-drift-core --example make_dump -- "$out" "$size_mb"
live_bytes=$(stat -c %s "$out/live.yaml")
desired_bytes=$(stat -c %s "$out/desired.yaml")
status=0
/usr/bin/time -f '%M %e' -o "$out/time.txt" \
  target/release/argo-drift diff --desired "$out/desired.yaml" --live "$out/live.yaml" -o json \
  >"$out/report.json" || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 1 ]; then
  echo "argo-drift failed with exit code $status" >&2
  exit "$status"
fi
read -r peak_kib seconds < <(tail -n 1 "$out/time.txt")
input_bytes=$((live_bytes + desired_bytes))
awk -v peak="$peak_kib" -v live="$live_bytes" -v input="$input_bytes" -v secs="$seconds" 'BEGIN {
  printf "live dump:  %.1f MiB\ninput:      %.1f MiB (live + desired)\npeak RSS:   %.1f MiB = %.2fx the input, %.2fx the live dump\nwall time:  %ss\n",
    live/1048576, input/1048576, peak/1024, peak*1024/input, peak*1024/live, secs
}'

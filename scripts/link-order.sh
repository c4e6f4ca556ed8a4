#!/usr/bin/env bash
# Write controller/link-order.txt: the functions `argo-drift diff` runs, in the order it first
# runs them, which controller/build.rs hands to the linker so that they are placed together
# (see there for why). Run it after a change of dependencies or of the diff path; names the
# binary no longer has only cost memory, never correctness.
#
#   scripts/link-order.sh [--controller] [CORPUS-DIR]
#
# With --controller, the functions the live controller (`argo-drift run`) calls come next: the
# live benchmark runs it under callgrind at a small size (10 apps, 1,000 objects, 20 writes),
# which needs the test environment (scripts/testenv.sh up). A controller's code is then mapped
# once too: at 10,000 objects its RSS after the benchmark's writes was 53.6 MiB rather than 60.8
# (`BENCH_OBJECTS=10000 cargo bench -p argo-drift-controller --bench live`).
#
# The runs: the README's offline example, as text and as JSON; and, when CORPUS-DIR (default
# target/diff-corpus/2000, made by `cargo bench -p argo-drift-controller --bench diff_corpus`)
# exists, its kubectl-form and JSON-form pairs. Each run is traced with valgrind's callgrind
# (Debian package valgrind), which names every function called, however rarely.
#
# Two builds are traced: `cargo build --release`'s, and the one `cargo bench` makes, whose
# dependencies carry the features the benchmarks' dev-dependencies add, and so other symbol
# names (a symbol's hash covers its crate's features). The file holds the names of both.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
controller=false
if [ "${1:-}" = --controller ]; then
  controller=true
  shift
fi
corpus=${1:-$root/target/diff-corpus/2000}
command -v valgrind >/dev/null || { echo "link-order.sh: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
cd "$root"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release -p argo-drift-controller
cp target/release/argo-drift "$work/release"
cargo bench -p argo-drift-controller --bench diff_corpus --no-run
cp target/release/argo-drift "$work/bench"

runs=(
  "diff --desired examples/offline/desired --live examples/offline/live"
  "diff -o json --desired examples/offline/desired --live examples/offline/live"
)
if [ -d "$corpus" ]; then
  runs+=(
    "diff -o json --fail-on critical --desired $corpus/desired-kubectl.yaml --live $corpus/live-kubectl.yaml"
    "diff -o json --fail-on critical --desired $corpus/desired.yaml --live $corpus/live.yaml"
    "diff --desired $corpus/desired-kubectl.yaml --live $corpus/live-kubectl.yaml"
  )
else
  echo "link-order.sh: no corpus at $corpus; tracing the offline example only" >&2
fi
n=0
for bin in "$work/release" "$work/bench"; do
  for run in "${runs[@]}"; do
    n=$((n + 1))
    # shellcheck disable=SC2086 # the run is a list of words
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/$n.out" "$bin" $run \
      >/dev/null 2>"$work/$n.err" || [ $? -eq 1 ] || { cat "$work/$n.err" >&2; exit 2; }
  done
done

if $controller; then
  # The benchmark's binary runs under the wrapper as it is; the release build's in its place.
  # The controller is killed at the end, so callgrind writes what it has seen every 20M blocks.
  trace="valgrind --tool=callgrind --demangle=no --dump-every-bb=20000000"
  printf '#!/bin/sh\nexec %s --callgrind-out-file=%s/run-bench-%%p.out "$@"\n' "$trace" "$work" >"$work/bench.sh"
  printf '#!/bin/sh\nshift\nexec %s --callgrind-out-file=%s/run-release-%%p.out %s "$@"\n' "$trace" "$work" "$work/release" >"$work/release.sh"
  chmod +x "$work/bench.sh" "$work/release.sh"
  for wrapper in "$work/bench.sh" "$work/release.sh"; do
    BENCH_WRAPPER=$wrapper BENCH_APPS=10 BENCH_OBJECTS=1000 BENCH_WRITES=20 \
      cargo bench -p argo-drift-controller --bench live >"$work/live.log" 2>&1 \
      || { tail -20 "$work/live.log" >&2; exit 2; }
  done
fi

# Callgrind names a function where it first appears (`fn=(ID) NAME`, `cfn=(ID) NAME`); keep the
# first appearance over all runs, and only names a binary defines as code.
nm --defined-only "$work/release" "$work/bench" | awk '$2 ~ /^[tTwW]$/ {print $3}' | sort -u >"$work/defined"
for out in $(seq -f "$work/%g.out" 1 "$n") $(ls "$work"/run-*.out* 2>/dev/null); do
  sed -nE 's/^c?fn=\([0-9]+\) (.*)$/\1/p' "$out"
done | awk '!seen[$0]++' | grep -Fxf "$work/defined" >"$work/functions"
# The first line names the toolchain, which controller/build.rs compares with the one building
# (to the linker it is one more name that no binary defines).
{ echo "# $(rustc --version)"; cat "$work/functions"; } >"$work/order"
cp "$work/order" "$root/controller/link-order.txt"
echo "link-order.sh: $(wc -l <"$work/functions") functions in controller/link-order.txt; rebuild to link with it"

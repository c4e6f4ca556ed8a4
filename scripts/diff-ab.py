#!/usr/bin/env python3
"""Compare builds of argo-drift on one `diff` run, interleaved so that a slow moment of the
machine weighs on every build alike.

    scripts/diff-ab.py [--runs N] BINARY... -- DIFF-ARGUMENTS...

Each binary is dropped from the page cache first (a freshly linked binary's cached pages are the
linker's large folios, and a run maps more of them: up to 0.7 MiB more peak RSS). Then the
binaries run one after the other, N times over, and the script prints per binary the median
wall time, the 25th percentile and minimum, the median CPU time (user + system) and the median
peak RSS. Peak RSS is taken in runs of its own (each binary dropped from the page cache again
first) under GNU time (`/usr/bin/time -f %M`, Debian package time): a process's maxrss counts
the memory of the process it was started from, until its exec, so a child of this script never
reads below this script's own ~15 MiB. Example, on the diff benchmark's corpus (made by
`cargo bench -p argo-drift-controller --bench diff_corpus`):

    cd target/diff-corpus/2000
    ../../../scripts/diff-ab.py --runs 40 /tmp/before /tmp/after -- \\
        diff -o json --fail-on critical --desired desired-kubectl.yaml --live live-kubectl.yaml
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

TIME = "/usr/bin/time"
# Runs per binary for peak RSS, which varies less than time.
RSS_RUNS = 5


def evict(path):
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [--runs N] BINARY... -- DIFF-ARGUMENTS...",
    )
    parser.add_argument("--runs", type=int, default=20, help="runs of each binary (20)")
    parser.add_argument("binaries", nargs="+", metavar="BINARY")
    argv = sys.argv[1:]
    if "--" not in argv:
        parser.parse_args(argv)  # --help, or an error about the options
        parser.error("give the arguments of the run after --")
    split = argv.index("--")
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    wall = {b: [] for b in args.binaries}
    cpu = {b: [] for b in args.binaries}
    rss = {b: [] for b in args.binaries}
    for b in args.binaries:
        evict(b)
    if not os.access(TIME, os.X_OK):
        sys.exit(f"{TIME} is needed to measure peak RSS (apt-get install time)")
    for _ in range(args.runs):
        for b in args.binaries:
            with tempfile.TemporaryFile() as stderr:
                start = time.perf_counter()
                child = subprocess.Popen([b] + command, stdout=subprocess.DEVNULL, stderr=stderr)
                _, status, usage = os.wait4(child.pid, 0)
                elapsed = time.perf_counter() - start
                code = os.waitstatus_to_exitcode(status)
                if code not in (0, 1):
                    stderr.seek(0)
                    sys.exit(f"{b} exited with {code}: {stderr.read().decode(errors='replace')}")
            wall[b].append(elapsed * 1000)
            cpu[b].append((usage.ru_utime + usage.ru_stime) * 1000)
    for b in args.binaries:
        evict(b)
    for _ in range(RSS_RUNS):
        for b in args.binaries:
            with tempfile.NamedTemporaryFile(mode="r") as out:
                subprocess.run(
                    [TIME, "-f", "%M", "-o", out.name, b] + command,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=False,
                )
                rss[b].append(int(out.read().split()[-1]) / 1024)
    for b in args.binaries:
        w = sorted(wall[b])
        print(
            f"{b}: wall median {statistics.median(w):.1f} ms (p25 {w[len(w) // 4]:.1f}, "
            f"min {w[0]:.1f}); CPU median {statistics.median(cpu[b]):.1f} ms; "
            f"peak RSS median {statistics.median(rss[b]):.1f} MiB"
        )


if __name__ == "__main__":
    main()

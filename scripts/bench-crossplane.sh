#!/usr/bin/env bash
# Parser benchmark against crossplane 0.5.8 on the same file, same run:
# criterion's mean for `large-config/parse` (wall time) and
# `large-config-cpu/parse` (on-CPU time of the thread), then
# crossplane.parse() timed in-process (best of 3, wall time), then the
# ratios. Needs .venv with crossplane==0.5.8
# (python3 -m venv .venv && .venv/bin/pip install crossplane==0.5.8).
set -euo pipefail
cd "$(dirname "$0")/.."
FILE=testdata/corpus/go-crossplane/large-config/nginx.conf
PY=${NXMESH_PYTHON:-.venv/bin/python}

# The machine is shared: print the load so the figures can be judged.
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
out=$(cargo bench -p nxmesh-core --bench parse -- --warm-up-time 2 --measurement-time 5 'large-config(-cpu)?/parse$' 2>&1)
echo "$out" | grep -E '^large-config|^ +(time|thrpt):' | grep -v '%'
# criterion prints `time: [low mean high]` with a unit; convert the mean to
# seconds. The first `time:` line is the wall-time group, the second the
# CPU-time group.
mean() {
  echo "$out" | awk -v n="$1" '/time:/ && !/%/ { if (++k == n) { v=$5; u=$6; f=(u=="ms")?1e-3:(u=="µs"||u=="us")?1e-6:(u=="ns")?1e-9:1; printf "%.9f", v*f; exit } }'
}
wall=$(mean 1)
cpu=$(mean 2)

theirs=$("$PY" - "$FILE" <<'PY'
import sys, time, crossplane
path = sys.argv[1]
best = min(
    (lambda t0: (crossplane.parse(path, single=True, comments=False), time.perf_counter() - t0)[1])(time.perf_counter())
    for _ in range(3)
)
print(f"{best:.6f}")
PY
)
size=$(stat -c %s "$FILE")
awk -v o="$wall" -v c="$cpu" -v t="$theirs" -v s="$size" 'BEGIN {
  printf "nxmesh:     %.3f ms wall  (%.1f MB/s)\n", o*1e3, s/o/1e6;
  printf "nxmesh:     %.3f ms CPU   (%.1f MB/s)\n", c*1e3, s/c/1e6;
  printf "crossplane: %.1f ms wall  (%.2f MB/s)\n", t*1e3, s/t/1e6;
  printf "ratio:      %.0fx (wall), %.0fx (nxmesh CPU time)\n", t/o, t/c }'
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"

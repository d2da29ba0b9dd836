#!/usr/bin/env bash
# `lockstep bench ingest --shards 2 --atoms 200000`, binary OLD against
# binary NEW (release builds), interleaved for ROUNDS pairs (default 10).
# Per run: the cluster's records/s, its ratio to raw RocksDB, the one-store
# path (same process, no gRPC) and its ratio, and the CPU time of the whole
# run where `perf` is installed. The JSON of each run is kept in OUT.
set -euo pipefail
OLD=${1:?usage: compare-ingest.sh OLD_LOCKSTEP NEW_LOCKSTEP [ROUNDS] [OUT]}
NEW=${2:?usage: compare-ingest.sh OLD_LOCKSTEP NEW_LOCKSTEP [ROUNDS] [OUT]}
ROUNDS=${3:-10}
OUT=${4:-$(mktemp -d)}
mkdir -p "$OUT"
for round in $(seq 1 "$ROUNDS"); do
  for b in OLD NEW; do
    exe=${!b}
    run=("$exe" bench ingest --shards 2 --atoms 200000 --json)
    if command -v perf >/dev/null 2>&1; then
      perf stat -x, -e task-clock -o "$OUT/$b-$round.perf" "${run[@]}" >"$OUT/$b-$round.json"
    else
      "${run[@]}" >"$OUT/$b-$round.json"
    fi
  done
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, os, statistics as st, sys
out, n = sys.argv[1], int(sys.argv[2])
def load(b, i):
    r = json.load(open(f"{out}/{b}-{i}.json"))
    r = r[0] if isinstance(r, list) else r
    p = f"{out}/{b}-{i}.perf"
    if os.path.exists(p):
        r["cpu_s"] = float([l for l in open(p) if "task-clock" in l][0].split(",")[0]) / 1000
    return r
old = [load("OLD", i) for i in range(1, n + 1)]
new = [load("NEW", i) for i in range(1, n + 1)]
for i, (o, w) in enumerate(zip(old, new), 1):
    print(f"pair {i}: ingest rec/s {o['lockstep_records_per_s']:.0f} -> {w['lockstep_records_per_s']:.0f}, "
          f"ratio to raw {o['ratio']:.3f} -> {w['ratio']:.3f}, "
          f"one store rec/s {o['store_records_per_s']:.0f} -> {w['store_records_per_s']:.0f}"
          + (f", cpu {o['cpu_s']:.2f} s -> {w['cpu_s']:.2f} s" if "cpu_s" in o else ""))
for k in ["lockstep_records_per_s", "ratio", "store_records_per_s", "store_ratio", "cpu_s"]:
    if k not in old[0]:
        continue
    a, b = [r[k] for r in old], [r[k] for r in new]
    pairs = [y / x for x, y in zip(a, b)]
    print(f"{k}: median {st.median(a):.3f} -> {st.median(b):.3f} ({st.median(b) / st.median(a):.3f}x); "
          f"median of pair ratios {st.median(pairs):.3f}x; new lower in {sum(p < 1 for p in pairs)} of {n}")
PY

#!/usr/bin/env bash
# bench ticks and bench ingest, binary OLD against binary NEW (release builds),
# interleaved, two rounds each.
set -euo pipefail
OLD=${1:?usage: compare-binaries.sh OLD_LOCKSTEP NEW_LOCKSTEP} NEW=${2:?usage: compare-binaries.sh OLD_LOCKSTEP NEW_LOCKSTEP}
for round in 1 2; do
  for b in OLD NEW; do
    exe=${!b}
    echo "== $b ticks round $round"
    $exe bench ticks --shards 4 --ticks 50 --json | python3 -c "import json,sys; r=json.load(sys.stdin); r=r[0] if isinstance(r,list) else r; print('ticks', r['shards'], 'barrier_median_us', round(r['barrier_median_us']), 'fanout_median_us', round(r['fanout_median_us']), 'ratio', round(r['ratio'],3))"
  done
  for b in OLD NEW; do
    exe=${!b}
    echo "== $b ingest round $round"
    $exe bench ingest --shards 2 --atoms 200000 --json | python3 -c "import json,sys; r=json.load(sys.stdin); r=r[0] if isinstance(r,list) else r; print('ingest', r['shards'], 'lockstep', round(r['lockstep_records_per_s']), 'raw', round(r['raw_records_per_s']), 'ratio', round(r['ratio'],3), 'store_ratio', round(r['store_ratio'],3))"
  done
done

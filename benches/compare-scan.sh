#!/usr/bin/env bash
# `scan` of 5,000 nodes and of 5,000 links, binary OLD against binary NEW,
# each on its own fresh 3-shard `lockstep up` holding `load --generate
# 30000` (6,000 ConceptNodes, 24,000 binary links); then NEW's `dump` of the
# whole store. Prints one line per timing, in seconds.
set -euo pipefail
OLD=${1:?usage: compare-scan.sh OLD_LOCKSTEP NEW_LOCKSTEP} NEW=${2:?usage: compare-scan.sh OLD_LOCKSTEP NEW_LOCKSTEP}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
for b in OLD NEW; do
  exe=${!b}
  dir="$work/$b"
  mkdir -p "$dir"
  LOCKSTEP_HOME="$dir/home" "$exe" up --shards 3 --port 0 --data-dir "$dir/data" > "$dir/up.log" 2>&1 &
  for _ in $(seq 1 240); do grep -q '^ready' "$dir/up.log" && break; sleep 0.25; done
  grep -q '^ready' "$dir/up.log" || { echo "$b: cluster did not start" >&2; cat "$dir/up.log" >&2; exit 1; }
  addr=$(awk '/^coordinator/{print $2}' "$dir/up.log")
  "$exe" --coordinator "$addr" load --generate 30000 --json > /dev/null 2>&1
  for t in ConceptNode InheritanceLink; do
    echo "$b scan $t --limit 5000: $(secs "$exe" --coordinator "$addr" scan "$t" --limit 5000 --json) s"
  done
  if [ "$b" = NEW ]; then
    echo "NEW dump of 30000 atoms: $(secs "$exe" --coordinator "$addr" dump --output "$dir/dump.scm") s"
  fi
  kill %1 2>/dev/null || true
  wait 2>/dev/null || true
done

#!/usr/bin/env bash
# The README's first command: builds Lockstep, starts a local cluster of a
# coordinator and 3 shard processes, loads a seeded AtomSpace of 100,000
# atoms, shows the cluster status and one atom, then stops the cluster. The
# data stays in ./lockstep-data; running this again restarts on it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo build --release --locked
bin="${CARGO_TARGET_DIR:-target}/release/lockstep"
data="${LOCKSTEP_DATA:-lockstep-data}"
mkdir -p "$data"
export LOCKSTEP_HOME="$data/home"

"$bin" up --shards 3 --data-dir "$data" --port 0 >"$data/up.out" 2>"$data/up.err" &
up=$!
trap 'kill -TERM $up 2>/dev/null; wait $up 2>/dev/null || true' EXIT

# Wait for `up` to say it is ready (it waits for every shard to register).
for _ in $(seq 1 1200); do
  if grep -q '^ready:' "$data/up.out"; then break; fi
  if ! kill -0 "$up" 2>/dev/null; then
    echo "lockstep up failed:" >&2
    cat "$data/up.err" >&2
    exit 1
  fi
  sleep 0.1
done
grep -q '^ready:' "$data/up.out" || { echo "cluster not ready after 120s" >&2; exit 1; }
cat "$data/up.out"
addr=$(awk '/^coordinator/ {print $2}' "$data/up.out")

echo
"$bin" --coordinator "$addr" load --generate 100000 --seed 42
echo
"$bin" --coordinator "$addr" status
echo
"$bin" --coordinator "$addr" get --node ConceptNode n0 | head -n 8
echo
echo "stopping the cluster; its data stays in $data"

#!/usr/bin/env bash
# Attention scaling: `lockstep bench attention` with N = 1..5 shard
# processes, each pinned to a core of its own (this process and the
# coordinator share core 0), on the seeded 1M-node / 4M-link graph. Prints
# each N's median tick, its speedup against N = 1, and the single-process
# baseline on the same graph. The target is a speedup of at least 0.9·N.
#
#   benches/scaling.sh                     # N = 1..5, 1M nodes, 5 ticks
#   benches/scaling.sh --nodes 200000      # extra flags go to the bench
#
# Needs at least 6 cores; a 2-core machine cannot say anything about it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lockstep/target}"
max="${SCALING_MAX_SHARDS:-5}"
cores=$(nproc)
if [ "$cores" -lt $((max + 1)) ]; then
  echo "scaling.sh: needs $((max + 1)) cores (one per shard plus one), this machine has $cores" >&2
  exit 2
fi
./scripts/deps.sh
cargo build --release --locked --workspace
shards=$(seq -s, 1 "$max")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$CARGO_TARGET_DIR/release/lockstep" bench attention --shards "$shards" --pin-cores "$@"

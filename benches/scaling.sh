#!/usr/bin/env bash
# Attention scaling: `lockstep bench attention` with N = 1..5 shard
# processes, each pinned to a core of its own (all its threads, RocksDB's
# background ones too; the coordinator and the client keep the other
# cores), on the seeded 1M-node / 4M-link graph. Prints each N's median
# tick, its speedup against N = 1, and the single-process baseline on the
# same graph. The target is a speedup of at least 0.9·N.
#
#   benches/scaling.sh                     # N = 1..5, 1M nodes, 21 ticks (the default)
#   benches/scaling.sh --nodes 200000      # extra flags go to the bench
#   LOCKSTEP_BIN=/path/to/lockstep benches/scaling.sh
#                                          # a release binary built elsewhere
#                                          # (a machine with no toolchain)
#
# Needs at least 6 cores; a 2-core machine cannot say anything about it.
set -euo pipefail
cd "$(dirname "$0")/.."
max="${SCALING_MAX_SHARDS:-5}"
cores=$(nproc)
if [ "$cores" -lt $((max + 1)) ]; then
  echo "scaling.sh: needs $((max + 1)) cores (one per shard plus one), this machine has $cores" >&2
  exit 2
fi
if [ -n "${LOCKSTEP_BIN:-}" ]; then
  bin="$LOCKSTEP_BIN"
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lockstep/target}"
  ./scripts/deps.sh
  cargo build --release --locked --workspace
  bin="$CARGO_TARGET_DIR/release/lockstep"
fi
shards=$(seq -s, 1 "$max")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$bin" bench attention --shards "$shards" --pin-cores "$@"

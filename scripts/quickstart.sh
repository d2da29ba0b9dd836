#!/usr/bin/env bash
# The README's first command: builds Lockstep in release mode, then runs
# `lockstep demo`: a coordinator and 3 shard processes on 127.0.0.1, a seeded
# AtomSpace of 100,000 atoms, and the attention workload for 20 ticks with
# progress bars, the top 10 and per-tick timings. The cluster's data stays in
# ./lockstep-demo; running this again restarts on it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo build --release --locked
exec "${CARGO_TARGET_DIR:-target}/release/lockstep" demo "$@"

#!/usr/bin/env bash
# The README's test command: installs missing system packages, then runs
# every unit and integration test. Integration tests start real coordinator
# and shard processes on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo test --workspace --locked "$@"

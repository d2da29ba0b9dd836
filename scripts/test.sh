#!/usr/bin/env bash
# The README's test command: installs missing system packages, checks that
# the client library stays free of RocksDB and the servers, then runs every
# unit and integration test. Integration tests start real coordinator and
# shard processes on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
# A program that only talks to a cluster must not compile RocksDB or a
# server: the client library's normal dependencies hold neither.
for crate in lockstep-client lockstep-model lockstep-proto; do
  deps=$(cargo tree --locked -p "$crate" -e normal --prefix none)
  if grep -E '^(rocksdb|librocksdb-sys|lockstep-shard|lockstep-coordinator) ' <<<"$deps" >/dev/null; then
    echo "$crate depends on RocksDB or a server crate:" >&2
    cargo tree --locked -p "$crate" -e normal -i rocksdb >&2 || true
    exit 1
  fi
done
cargo test --workspace --locked "$@"

#!/usr/bin/env bash
# Runs every cargo-fuzz target (proto/fuzz: the Atomese reader, the JSON
# Lines reader, and the request messages the services decode and validate)
# for SECONDS each (default 60), printing libFuzzer's closing line per
# target. A crash stops the script with libFuzzer's report and the input
# saved under $CARGO_TARGET_DIR/fuzz-artifacts. Corpora are kept in
# $CARGO_TARGET_DIR/fuzz-corpus, so later runs start where earlier ones
# stopped. The targets link no RocksDB, so no C++ is rebuilt with
# sanitizer flags.
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 30         # what CI runs
#   scripts/fuzz.sh 3600 scm   # one long run of one target
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(scm jsonl requests)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lockstep/target}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked >/dev/null
fi
# libFuzzer's instrumentation needs nightly flags: a nightly toolchain if
# rustup has one, else the stable compiler with them allowed.
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi
corpus="$CARGO_TARGET_DIR/fuzz-corpus"
artifacts="$CARGO_TARGET_DIR/fuzz-artifacts"
for t in "${targets[@]}"; do
  mkdir -p "$corpus/$t" "$artifacts"
  log="$artifacts/$t.log"
  if ! cargo "${toolchain[@]}" fuzz run --fuzz-dir proto/fuzz --target-dir "$CARGO_TARGET_DIR/fuzz" \
    "$t" "$corpus/$t" "proto/fuzz/seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="$artifacts/$t-" >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz target $t failed; input saved under $artifacts" >&2
    exit 1
  fi
  echo "$t: $(grep -E '^Done [0-9]+ runs' "$log" | tail -n 1)"
done

#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine with only a Rust toolchain
# lacks to build Lockstep: a C++ compiler for RocksDB and libclang for its
# bindings. protoc comes from the protoc-bin-vendored crate.
set -euo pipefail

need=()
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 \
  && ! ls /usr/lib/*/libclang*.so* >/dev/null 2>&1; then
  need+=(libclang-dev)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${need[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${need[@]}" >/dev/null

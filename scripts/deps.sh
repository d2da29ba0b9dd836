#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine with only a Rust toolchain
# lacks to build Lockstep: a C++ compiler for RocksDB and libclang for its
# bindings. protoc comes from the protoc-bin-vendored crate.
set -euo pipefail

need=()
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
# libclang itself (libclang.so / libclang-N.so), not libclang-cpp, which
# some images carry without it.
have_libclang() {
  local f
  for f in /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
    /usr/lib/*/libclang.so* /usr/lib/*/libclang-[0-9]*.so*; do
    [ -e "$f" ] && return 0
  done
  return 1
}
if ! have_libclang; then
  need+=(libclang-dev)
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
updated=""
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  $sudo apt-get update -qq
  updated=1
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# promtool checks the servers' /metrics output in the tests. Only the
# binary is taken from Debian's prometheus package: installing the package
# would also start a Prometheus server.
if ! command -v promtool >/dev/null 2>&1; then
  echo "installing: promtool (from Debian's prometheus package)" >&2
  [ -n "$updated" ] || $sudo apt-get update -qq
  work="$(mktemp -d)"
  chmod 0755 "$work"
  (cd "$work" && apt-get download -qq prometheus >/dev/null)
  dpkg-deb -x "$work"/prometheus_*.deb "$work/x"
  $sudo install -m 0755 "$work/x/usr/bin/promtool" /usr/local/bin/promtool
  rm -rf "$work"
fi

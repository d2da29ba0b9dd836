#!/usr/bin/env bash
# Builds the container image lockstep:dev without pulling anything: the
# release binary and the shared libraries `ldd` says it loads, copied into a
# root filesystem assembled here, on top of `FROM scratch`.
#
#   deploy/build-image.sh            # builds lockstep:dev
#   LOCKSTEP_IMAGE=me/lockstep:1 deploy/build-image.sh
#
# Needs Docker and what scripts/deps.sh installs. The image holds no shell;
# `lockstep health` is its health probe.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lockstep/target}"
image="${LOCKSTEP_IMAGE:-lockstep:dev}"

./scripts/deps.sh
cargo build --release --locked --workspace
bin="$CARGO_TARGET_DIR/release/lockstep"

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/data" "$root/etc" "$root/tmp"
chmod 1777 "$root/tmp"

# The binary without its line tables (they only serve backtraces).
objcopy --strip-debug "$bin" "$root/lockstep"

# Every library the dynamic loader will map, at the same path, plus the
# loader itself. Symlinks are resolved so the image holds real files.
libs=$(ldd "$bin" | awk '/=> \//{print $3} /^[[:space:]]*\/[^ ]+/{print $1}' | sort -u)
for lib in $libs; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# No CA store is needed: with TLS (rustls), Lockstep trusts only the
# cluster CA it is given (docker-compose.secure.yml).
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/:/lockstep\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
ENV LOCKSTEP_LISTEN=0.0.0.0:7400 \
    LOCKSTEP_DATA_DIR=/data
VOLUME /data
EXPOSE 7400
HEALTHCHECK --interval=2s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/lockstep", "health", "127.0.0.1:7400"]
ENTRYPOINT ["/lockstep"]
CMD ["coordinator"]
DOCKERFILE

# The classic builder needs no BuildKit plugin; FROM scratch pulls nothing.
if ! DOCKER_BUILDKIT=0 docker build --quiet -t "$image" "$ctx" >/dev/null 2>"$ctx/build.log"; then
  cat "$ctx/build.log" >&2
  exit 1
fi
# The image must start: a missing library or loader fails here, not later.
docker run --rm "$image" --version >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$image")
echo "built $image: $(( size / 1000 / 1000 )) MB ($size bytes): lockstep + $(echo "$libs" | wc -w) files from ldd"

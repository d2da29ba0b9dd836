#!/usr/bin/env bash
# Walks the README's compose section with the commands exactly as written
# there: start, load, run a job, read status, stop. With --secure, the
# secure deployment: the TLS material made with the image, the secure
# overlay, and a check that a client without the cluster's certificate and
# token is refused. A project name, port (and TLS folder) of its own keep
# it apart from a cluster the user may be running; it tears everything
# down (containers, network, volumes) even when a step fails.
#
#   deploy/compose-smoke.sh            # the plaintext deployment
#   deploy/compose-smoke.sh --secure   # TLS and a token
set -euo pipefail
cd "$(dirname "$0")/.."
secure=false
[ "${1:-}" = "--secure" ] && secure=true
export COMPOSE_PROJECT_NAME="lockstep-smoke-$$"
export LOCKSTEP_PORT="${LOCKSTEP_PORT:-$((20000 + $$ % 20000))}"
plain="docker-compose -f deploy/docker-compose.yml"
compose="$plain"
what="compose"
tls=""
if $secure; then
  tls="$(mktemp -d)"
  export LOCKSTEP_TLS_DIR="$tls"
  compose="$plain -f deploy/docker-compose.secure.yml"
  what="secure compose"
fi
trap '$compose down -v --remove-orphans >/dev/null 2>&1 || true; [ -z "$tls" ] || rm -rf "$tls" 2>/dev/null || true' EXIT

step() { echo "\$ $*"; timeout 300 "$@"; }

if $secure; then
  step docker run --rm -v "$LOCKSTEP_TLS_DIR:/out" lockstep:dev certs --out /out --shards 0 --name shard
fi
step $compose up -d
# Wait, with a deadline, for the coordinator and the 3 shards to be healthy.
deadline=$((SECONDS + 120))
while :; do
  healthy=$($compose ps | grep -c '(healthy)' || true)
  [ "$healthy" -ge 4 ] && break
  if [ $SECONDS -ge $deadline ]; then
    $compose ps
    $compose logs --tail 50
    echo "$what: only $healthy of 4 containers healthy after 120s"
    exit 1
  fi
  sleep 1
done
step $compose run --rm cli load --generate 20000
step $compose run --rm cli run attention --ticks 5
out=$(step $compose run --rm cli status)
echo "$out"
up=$(echo "$out" | grep -c ' Up ' || true)
if [ "$up" -ne 3 ]; then
  echo "$what: expected 3 shards Up in status, saw $up"
  exit 1
fi
echo "$out" | grep -q 'committed tick 5' || {
  echo "$what: status does not show committed tick 5"
  exit 1
}
if $secure; then
  # The plain CLI service (no certificate, no token) on the same network.
  if err=$($plain run --rm cli status 2>&1); then
    echo "$what: a plaintext client was served: $err"
    exit 1
  fi
  echo "$err" | grep -q 'TLS' || {
    echo "$what: the plaintext client's error does not say TLS: $err"
    exit 1
  }
  echo "refused, as it should be: $(echo "$err" | grep TLS | head -n 1)"
fi
step $compose down -v
echo "$what smoke: ok"

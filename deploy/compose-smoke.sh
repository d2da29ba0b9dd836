#!/usr/bin/env bash
# Walks the README's compose section with the commands exactly as written
# there: start, load, run a job, read status, stop. A project name and port
# of its own keep it apart from a cluster the user may be running; it tears
# everything down (containers, network, volumes) even when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export COMPOSE_PROJECT_NAME="lockstep-smoke-$$"
export LOCKSTEP_PORT="${LOCKSTEP_PORT:-$((20000 + $$ % 20000))}"
compose="docker-compose -f deploy/docker-compose.yml"
trap '$compose down -v --remove-orphans >/dev/null 2>&1 || true' EXIT

step() { echo "\$ $*"; timeout 300 "$@"; }

step $compose up -d
# Wait, with a deadline, for the coordinator and the 3 shards to be healthy.
deadline=$((SECONDS + 120))
while :; do
  healthy=$($compose ps | grep -c '(healthy)' || true)
  [ "$healthy" -ge 4 ] && break
  if [ $SECONDS -ge $deadline ]; then
    $compose ps
    $compose logs --tail 50
    echo "compose: only $healthy of 4 containers healthy after 120s"
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
  echo "compose: expected 3 shards Up in status, saw $up"
  exit 1
fi
echo "$out" | grep -q 'committed tick 5' || {
  echo "compose: status does not show committed tick 5"
  exit 1
}
step $compose down -v
trap - EXIT
echo "compose smoke: ok"

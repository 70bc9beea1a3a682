#!/usr/bin/env bash
# corrald's own CPU per warm invocation, for two builds side by side (issue 27's evidence: what
# the per-tenant metrics, usage and alert accounting cost on the warm path).
#   - each build's corrald runs in turn on its own data directory, with one tenant whose quotas
#     are lifted and one published script (`function handle(input) return {n = input.n} end`),
#     invoked through POST …/scripts/echo/invoke by `wrk` (-t2 -c16, keep-alive) as a tenant's
#     invoker token would;
#   - for each round: invocations/s, and corrald's CPU (user + system, its own threads only, from
#     /proc/PID/stat, not the workers') divided by the invocations wrk had answered;
#   - the builds alternate, ROUNDS times, so that whatever else the machine does hits both alike.
#
# Usage: bench/warm_cost.sh BEFORE_BIN_DIR AFTER_BIN_DIR [seconds-per-round]
#   each BIN_DIR holds corrald and corral-worker (build/release/src/cmd of a checkout)
# Environment: ROUNDS=3 (rounds per build), WARMUP=2 (seconds of wrk before each round).
# Needs: wrk, curl, python3 (scripts/install-deps.sh). Run it as root, like corrald.
set -euo pipefail
cd "$(dirname "$0")/.."

note() { echo "warm_cost.sh: $*" >&2; }
[ $# -ge 2 ] || { note "give two directories holding corrald and corral-worker (see the top of bench/warm_cost.sh)"; exit 1; }
builds=("$1" "$2")
seconds=${3:-10}
rounds=${ROUNDS:-3}
warmup=${WARMUP:-2}
for dir in "${builds[@]}"; do
  for program in corrald corral-worker; do
    [ -x "$dir/$program" ] || { note "$dir/$program is missing: build it (ninja corrald corral-worker)"; exit 1; }
  done
done
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { note "$tool is missing: scripts/install-deps.sh installs it"; exit 1; }
done

work=$(mktemp -d)
corrald_pid=""
cleanup() {
  [ -z "$corrald_pid" ] || kill "$corrald_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/policy.yaml" <<'YAML'
defaults:
  quotas: {rate_per_second: 1000000, burst: 1000000, concurrency: 10000, cpu_ms_per_minute: 3600000}
YAML

call() {  # token method path [json]
  curl -sS --fail-with-body -X "$2" -H "authorization: Bearer $1" -H 'content-type: application/json' \
    ${4:+--data "$4"} "http://$address$3"
}
field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

start() {  # bin dir, label → $corrald_pid, $address, $invoker
  local dir=$1 label=$2
  rm -rf "$work/data-$label" "$work/ready"
  "$dir/corrald" --listen 127.0.0.1:0 --ready-file "$work/ready" --data-dir "$work/data-$label" \
    --worker "$dir/corral-worker" --policy "$work/policy.yaml" >>"$work/corrald-$label.log" 2>&1 &
  corrald_pid=$!
  for _ in $(seq 600); do [ -s "$work/ready" ] && break; kill -0 "$corrald_pid" 2>/dev/null || break; sleep 0.05; done
  [ -s "$work/ready" ] || { note "corrald ($label) did not start; the end of its log:"; tail -20 "$work/corrald-$label.log" >&2; exit 1; }
  address=$(cat "$work/ready")
  local admin publisher reviewer
  admin=$(head -1 "$work/data-$label/admin.token")
  call "$admin" POST /v1/tenants '{"name":"acme"}' >/dev/null
  publisher=$(call "$admin" POST /v1/tenants/acme/tokens '{"role":"publisher","subject":"bench"}' | field token)
  reviewer=$(call "$admin" POST /v1/tenants/acme/tokens '{"role":"reviewer","subject":"bench-review"}' | field token)
  invoker=$(call "$admin" POST /v1/tenants/acme/tokens '{"role":"invoker","subject":"bench-call"}' | field token)
  call "$publisher" POST /v1/tenants/acme/scripts/echo/versions \
    '{"source":"function handle(input) return {n = input.n} end","manifest":{"runtime":"lua5.4","capabilities":[],"deterministic":false,"description":"bench"}}' >/dev/null
  call "$reviewer" POST /v1/tenants/acme/scripts/echo/versions/1/approve >/dev/null
  call "$reviewer" PUT /v1/tenants/acme/scripts/echo/aliases/live '{"version":1}' >/dev/null
  cat >"$work/invoke.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"input":{"n":1}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $invoker"
LUA
}
stop() { kill -TERM "$corrald_pid"; wait "$corrald_pid" 2>/dev/null || true; corrald_pid=""; }
corrald_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$corrald_pid/stat"; }
hz=$(getconf CLK_TCK)

echo "| round | build | invocations/s | non-2xx | corrald CPU per invocation |"
echo "| --- | --- | --- | --- | --- |"
for round in $(seq "$rounds"); do
  for which in 0 1; do
    label=$([ "$which" = 0 ] && echo before || echo after)
    start "${builds[$which]}" "$label"
    url="http://$address/v1/tenants/acme/scripts/echo/invoke"
    wrk -t2 -c16 -d"${warmup}s" -s "$work/invoke.lua" "$url" >/dev/null
    ticks=$(corrald_ticks)
    wrk -t2 -c16 -d"${seconds}s" -s "$work/invoke.lua" "$url" >"$work/wrk.out"
    used=$(( $(corrald_ticks) - ticks ))
    requests=$(awk '/requests in/ { print $1 }' "$work/wrk.out")
    rate=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$work/wrk.out")
    bad=$(awk '/Non-2xx/ { print $NF }' "$work/wrk.out"); bad=${bad:-0}
    per=$(awk -v t="$used" -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.0f µs", (n > 0 ? t / hz / n * 1e6 : 0) }')
    echo "| $round | $label | $rate | $bad | $per |"
    stop
  done
done

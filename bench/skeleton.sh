#!/usr/bin/env bash
# Measures the walking skeleton on this machine and prints a table:
#   - wall time of a trivial `corral run` (a fresh worker process per run);
#   - POST /v1/run requests per second and latency with wrk at 16 connections, keep-alive.
# Usage: bench/skeleton.sh [seconds-per-wrk-run]   (run ./dev.sh test or run once first)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
bin=build/release/src/cmd
[ -x "$bin/corrald" ] || { echo "build first: ./dev.sh test (or cmake --build build/release)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is missing: scripts/install-deps.sh installs it" >&2; exit 1; }

work=$(mktemp -d)
trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT

echo 'function handle(input, ctx) return {sum = input.a + input.b} end' > "$work/trivial.lua"
runs=50
start=$(date +%s%N)
for _ in $(seq $runs); do "$bin/corral" run "$work/trivial.lua" --input '{"a":1,"b":2}' >/dev/null; done
end=$(date +%s%N)
cli_ms=$(awk -v ns=$((end - start)) -v n=$runs 'BEGIN { printf "%.2f", ns / n / 1e6 }')

"$bin/corrald" --listen 127.0.0.1:0 --ready-file "$work/ready" --data-dir "$work/data" >"$work/log" 2>&1 &
echo $! > "$work/pid"
for _ in $(seq 100); do [ -s "$work/ready" ] && break; sleep 0.05; done
address=$(cat "$work/ready")
token=$(cat "$work/data/admin.token")

cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer $token"
wrk.body = '{"source":"function handle(input, ctx) input.total = input.amount * 1.2 input.seen = true return input end","input":{"id":7,"amount":10,"currency":"EUR"}}'
LUA
wrk -t2 -c16 -d"${duration}s" --latency -s "$work/post.lua" "http://$address/v1/run" >"$work/wrk16"
rps=$(awk '/Requests\/sec/ { print $2 }' "$work/wrk16")
p50=$(awk '$1 == "50%" { print $2 }' "$work/wrk16")
p99=$(awk '$1 == "99%" { print $2 }' "$work/wrk16")
errors=$(grep -E "Non-2xx|Socket errors" "$work/wrk16" || echo "none")

printf '\n| measure | value |\n| --- | --- |\n'
printf '| trivial `corral run`, mean of %d | %s ms |\n' "$runs" "$cli_ms"
printf '| POST /v1/run, wrk 16 connections, %ss | %s req/s |\n' "$duration" "$rps"
printf '| latency p50 / p99 | %s / %s |\n' "$p50" "$p99"
printf '| errors | %s |\n' "$errors"

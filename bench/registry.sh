#!/usr/bin/env bash
# Latency of the registry through HTTP on this machine, one keep-alive client, sequential requests:
#   - publish: POST .../versions of a new source each time (validation: compile in corrald, and
#     the top level run once in the tenant's jailed worker to find handle; SQLite commit + audit);
#   - republish: the same source again (idempotent: no worker, no write);
#   - approve: POST .../versions/N/approve (state change + audit entry in one transaction);
#   - invoke: POST .../invoke by the alias "live" (token check, alias → version, run in a warm
#     worker), against POST /v1/run of the same source as a baseline.
# Prints p50 / p99 / mean in milliseconds. Usage: bench/registry.sh [requests-per-kind]
# With CORRAL_BENCH_STORE=postgresql the store is a PostgreSQL server the script starts (as the
# tests do: build/release/tests/corral-test-postgres, unix socket, fsync off) instead of SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-300}
bin=build/release/src/cmd
[ -x "$bin/corrald" ] || { echo "build first: ninja -C build/release corrald corral-worker" >&2; exit 1; }

work=$(mktemp -d)
store=()
postgres_dir=""
if [ "${CORRAL_BENCH_STORE:-sqlite}" = postgresql ]; then
  postgres_dir="/tmp/corral-bench-pg-$$"
  build/release/tests/corral-test-postgres start "$postgres_dir" >/dev/null
  store=(--store "postgresql://corral@/postgres?host=$postgres_dir")
fi
trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; sleep 0.5;
  [ -n "$postgres_dir" ] && build/release/tests/corral-test-postgres stop "$postgres_dir" >/dev/null;
  rm -rf "$work"' EXIT
"$bin/corrald" --listen 127.0.0.1:0 --ready-file "$work/ready" --data-dir "$work/data" \
  --worker "$bin/corral-worker" "${store[@]}" >"$work/log" 2>&1 &
echo $! > "$work/pid"
for _ in $(seq 200); do [ -s "$work/ready" ] && break; sleep 0.05; done
[ -s "$work/ready" ] || { echo "corrald did not start; its log:" >&2; cat "$work/log" >&2; exit 1; }

python3 - "$(cat "$work/ready")" "$(cat "$work/data/admin.token")" "$count" <<'PY'
import http.client, json, sys, time

address, admin, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
host, port = address.rsplit(":", 1)
connection = http.client.HTTPConnection(host, int(port))

def call(token, method, path, body=None):
    headers = {"Authorization": "Bearer " + token}
    if body is not None:
        headers["Content-Type"] = "application/json"
    connection.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = connection.getresponse()
    data = response.read()
    if response.status >= 300:
        sys.exit(f"{method} {path} answered {response.status}: {data[:300]!r}")
    return json.loads(data)

def token(role, subject):
    return call(admin, "POST", "/v1/tenants/bench/tokens", {"role": role, "subject": subject})["token"]

call(admin, "POST", "/v1/tenants", {"name": "bench"})
# What is measured is the work, not the quotas: the publish and request quotas out of the way.
call(admin, "PUT", "/v1/policy", {"document": "defaults:\n  quotas: {publishes_per_minute: 10000, "
     "rate_per_second: 100000, burst: 100000, concurrency: 100}\n"})
publisher, reviewer, invoker = token("publisher", "p"), token("reviewer", "r"), token("invoker", "i")
base = "/v1/tenants/bench/scripts/orders"
manifest = {"runtime": "lua5.4", "capabilities": ["log"], "deterministic": True, "description": "bench"}
source = "function handle(input, ctx) return {id = input.id, total = input.amount * 1.2} end -- %d"

def timed(action):
    start = time.perf_counter()
    result = action()
    return (time.perf_counter() - start) * 1000, result

figures = {}
publish_ms, versions = [], []
for i in range(count):
    ms, made = timed(lambda: call(publisher, "POST", base + "/versions", {"source": source % i, "manifest": manifest}))
    publish_ms.append(ms)
    versions.append(made["version"])
figures["publish (new source)"] = publish_ms
figures["republish (same source)"] = [timed(lambda: call(publisher, "POST", base + "/versions",
                                                         {"source": source % 0, "manifest": manifest}))[0]
                                      for _ in range(count)]
figures["approve"] = [timed(lambda v=v: call(reviewer, "POST", f"{base}/versions/{v}/approve"))[0] for v in versions]
call(reviewer, "PUT", base + "/aliases/live", {"version": versions[-1]})
payload = {"input": {"id": 7, "amount": 10}}
for _ in range(20):  # warm the tenant's worker
    call(invoker, "POST", base + "/invoke", payload)
figures["invoke by alias live"] = [timed(lambda: call(invoker, "POST", base + "/invoke", payload))[0]
                                   for _ in range(count)]
run_body = {"source": source % 0, "input": payload["input"]}
for _ in range(20):
    call(admin, "POST", "/v1/run", run_body)
figures["POST /v1/run (baseline)"] = [timed(lambda: call(admin, "POST", "/v1/run", run_body))[0] for _ in range(count)]

def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

print(f"{'operation':<28} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
for name, values in figures.items():
    print(f"{name:<28} {len(values):>5} {percentile(values, 50):>8.2f} {percentile(values, 99):>8.2f} "
          f"{sum(values) / len(values):>8.2f}")
PY

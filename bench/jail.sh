#!/usr/bin/env bash
# Measures corral against its ceiling and its floor on this machine, in one run, and prints a
# markdown table (DESIGN.md, "Measuring"; issue 3, "Evidence"):
#   - warm POST /v1/run throughput and p50/p99 with wrk at 16 and 64 keep-alive connections, for a
#     JSON transformation (decode an order, change two fields, encode), against Redis EVAL of the
#     same transformation with cjson inside Redis (redis-benchmark, same connection counts);
#   - cold start (a new tenant's first invocation, from corral-pool-bench) against one
#     `bwrap --unshare-all ... lua5.4 -e ...` spawn and against `lua5.4 -e ...` alone;
#   - idle worker resident memory, and throughput with 1, 10, 100 and 1,000 tenants taking turns
#     (corral-pool-bench).
# Usage: bench/jail.sh [seconds-per-wrk-run] [seconds-per-pool-throughput-run]   (defaults 10 and 5)
# Needs: ninja -C build/release corrald corral-worker corral-pool-bench, and
#        scripts/install-deps.sh (wrk, redis-server, redis-tools, bubblewrap, lua5.4).
# Runs in about two minutes. Run it as the user corrald runs as (root, for the cgroup layer).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
pool_seconds=${2:-5}
bin=build/release
corrald=$bin/src/cmd/corrald
worker=$bin/src/cmd/corral-worker
pool_bench=$bin/bench/corral-pool-bench
runtime_bench=$bin/bench/corral-runtime-bench
for program in "$corrald" "$worker" "$pool_bench" "$runtime_bench"; do
  [ -x "$program" ] || { echo "jail.sh: $program is missing: ninja -C build/release corrald corral-worker corral-pool-bench corral-runtime-bench" >&2; exit 1; }
done
for tool in wrk redis-server redis-cli redis-benchmark bwrap lua5.4 curl; do
  command -v "$tool" >/dev/null || { echo "jail.sh: $tool is missing: scripts/install-deps.sh installs it" >&2; exit 1; }
done

work=$(mktemp -d)
cleanup() {
  for pidfile in "$work"/*.pid; do
    [ -e "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
note() { echo "jail.sh: $*" >&2; }
# A private copy of the programs, so that a rebuild during the run cannot swap them.
mkdir "$work/bin"
cp "$corrald" "$worker" "$pool_bench" "$runtime_bench" "$work/bin/"
corrald=$work/bin/corrald worker=$work/bin/corral-worker pool_bench=$work/bin/corral-pool-bench
runtime_bench=$work/bin/corral-runtime-bench

order='{"id":7,"amount":10,"currency":"EUR","customer":"c-42","items":3}'
lua_transform='function handle(input) input.total = input.amount * 1.2 input.seen = true return input end'
redis_transform='local o = cjson.decode(ARGV[1]) o.total = o.amount * 1.2 o.seen = true return cjson.encode(o)'
trivial_lua='local function handle(input) return {ok = true} end assert(handle({}).ok)'

# wrk prints latencies as 512.00us, 1.23ms or 1.02s: to milliseconds.
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == ">=") ? (v + 0 >= t + 0) : (op == "<=") ? (v + 0 <= t + 0) : (v + 0 < t + 0); print ok ? "met" : "**not met**" }'; }

# How busy the CPUs are (in %): the machine is shared, so the table says how quiet it was.
cpu_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
busy_since() { local b t b2 t2; read -r b t <<<"$1"; read -r b2 t2 <<<"$(cpu_ticks)"; echo $(( 100 * (b2 - b) / (t2 - t > 0 ? t2 - t : 1) )); }
before=$(cpu_ticks); sleep 3; busy_before=$(busy_since "$before")
[ "$busy_before" -lt 20 ] || note "the CPUs were ${busy_before}% busy before the run: other work will skew the figures"

# ---- corral-pool-bench: cold start, idle memory, tenants taking turns -------------------------
note "corral-pool-bench (cold start, idle memory, 1/10/100/1000 tenants; ~$((4 * (pool_seconds + 1) + 5)) s)"
"$pool_bench" --worker "$worker" --seconds "$pool_seconds" --format kv >"$work/pool.kv" 2>"$work/pool.err" ||
  { cat "$work/pool.err" >&2; exit 1; }
kv() { awk -v k="$1" '$1 == k { print $2 }' "$work/pool.kv"; }
[ -s "$work/pool.err" ] && { note "corral-pool-bench reported:"; sed 's/^/  /' "$work/pool.err" >&2; }

# ---- corral-runtime-bench: one warm run inside the runtime, with no process around it ----------
note "corral-runtime-bench (Engine::run and the worker's frame JSON; ~5 s)"
"$runtime_bench" --benchmark_format=csv --benchmark_min_time=1 >"$work/runtime.csv" 2>/dev/null ||
  { note "corral-runtime-bench failed"; exit 1; }
runtime_us() { awk -F, -v name="\"$1\"" '$1 == name { printf "%.1f", $4 / 1000 }' "$work/runtime.csv"; }  # cpu_time, ns

# ---- bwrap and lua5.4 spawns, for the cold start -----------------------------------------------
note "30 bwrap spawns, 30 lua5.4 runs, and 300 bwrap spawns 16 at a time"
spawns=30
bwrap_cmd=(bwrap --unshare-all --die-with-parent --ro-bind /usr /usr --symlink usr/lib /lib
           --symlink usr/lib64 /lib64 --symlink usr/bin /bin lua5.4 -e "$trivial_lua")
"${bwrap_cmd[@]}" || { note "bwrap cannot run lua5.4 here"; exit 1; }
for _ in $(seq $spawns); do
  start=$EPOCHREALTIME; "${bwrap_cmd[@]}"; end=$EPOCHREALTIME
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", (e - s) * 1000 }'
done >"$work/bwrap.ms"
for _ in $(seq $spawns); do
  start=$EPOCHREALTIME; lua5.4 -e "$trivial_lua"; end=$EPOCHREALTIME
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", (e - s) * 1000 }'
done >"$work/lua.ms"
# The floor of DESIGN.md: a fresh sandbox per request, 16 at a time, as per-run code runners do.
floor_runs=300
start=$EPOCHREALTIME
seq $floor_runs | xargs -P 16 -I{} "${bwrap_cmd[@]}"
end=$EPOCHREALTIME
floor_rps=$(awk -v s="$start" -v e="$end" -v n=$floor_runs 'BEGIN { printf "%.0f", n / (e - s) }')
bwrap_ms=$(median <"$work/bwrap.ms")
lua_ms=$(median <"$work/lua.ms")

# ---- warm: corrald under wrk against Redis EVAL under redis-benchmark ---------------------------
# Both servers run side by side and the runs alternate (corral 16, Redis 16, corral 64, Redis 64),
# so that a neighbour's load on this shared machine hits both alike.
note "warm: corrald (wrk) and Redis EVAL (redis-benchmark) at 16 and 64 connections, ~${duration}s per run"
# The bench measures throughput, not admission: the playground tenant (admins' /v1/run) gets
# quotas far above what the machine can serve, instead of the defaults (10/s, 4 at once).
cat >"$work/policy.yaml" <<'YAML'
tenants:
  playground:
    quotas: {rate_per_second: 1000000, burst: 1000000, concurrency: 10000, cpu_ms_per_minute: 3600000}
YAML
"$corrald" --listen 127.0.0.1:0 --ready-file "$work/ready" --data-dir "$work/data" --worker "$worker" \
  --policy "$work/policy.yaml" --io-threads 1 --invocation-threads 4 --max-workers 32 \
  --warm-per-tenant 16 >"$work/corrald.log" 2>&1 &
echo $! >"$work/corrald.pid"
for _ in $(seq 200); do [ -s "$work/ready" ] && break; sleep 0.05; done
[ -s "$work/ready" ] || { note "corrald did not start:"; cat "$work/corrald.log" >&2; exit 1; }
address=$(cat "$work/ready")
# /v1/run needs a token: the admin token corrald writes on first start (it runs as "playground").
auth_header=""
[ -s "$work/data/admin.token" ] && auth_header="Authorization: Bearer $(head -1 "$work/data/admin.token")"
body=$(printf '{"source":"%s","input":%s}' "$lua_transform" "$order")
answer=$(curl -sS -o "$work/answer" -w '%{http_code}' -H 'content-type: application/json' ${auth_header:+-H "$auth_header"} \
  -d "$body" "http://$address/v1/run")
grep -q '"total":12' "$work/answer" && [ "$answer" = 200 ] ||
  { note "corrald answered $answer: $(cat "$work/answer")"; exit 1; }
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = [[$body]]
LUA
[ -z "$auth_header" ] || echo "wrk.headers[\"authorization\"] = \"${auth_header#Authorization: }\"" >>"$work/post.lua"

redis_port=""
for port in $(shuf -i 20000-60000 -n 20); do
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    >"$work/redis.log" 2>&1 &
  echo $! >"$work/redis.pid"
  for _ in $(seq 40); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  if redis-cli -p "$port" ping >/dev/null 2>&1; then redis_port=$port; break; fi
  kill "$(cat "$work/redis.pid")" 2>/dev/null || true; rm "$work/redis.pid"
done
[ -n "$redis_port" ] || { note "redis-server did not start:"; cat "$work/redis.log" >&2; exit 1; }
redis-cli -p "$redis_port" EVAL "$redis_transform" 0 "$order" | grep -q '"total":12' ||
  { note "Redis EVAL gave the wrong answer"; exit 1; }

# CPU time of the whole machine per request, in µs, from busy ticks (1/100 s) over a run: the
# server and its load generator together, for corral and Redis alike.
cpu_us_per_request() { awk -v ticks="$1" -v n="$2" 'BEGIN { if (n + 0 == 0) print "n/a"; else printf "%.0f", ticks * 10000 / n }'; }
busy_ticks() { local busy _; read -r busy _ <<<"$(cpu_ticks)"; echo "$busy"; }

run_wrk() {  # connections → "rps p50_ms p99_ms non2xx errors cpu_us_per_request"
  local ticks_before; ticks_before=$(busy_ticks)
  wrk -t2 -c"$1" -d"${duration}s" --latency -s "$work/post.lua" "http://$address/v1/run" >"$work/wrk$1"
  local rps p50 p99 non2xx errors
  rps=$(awk '/Requests\/sec/ { printf "%.0f", $2 }' "$work/wrk$1")
  p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$work/wrk$1")")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$work/wrk$1")")
  non2xx=$(awk '/Non-2xx/ { print $NF }' "$work/wrk$1"); non2xx=${non2xx:-0}
  errors=$(awk '/Socket errors/ { sub(/.*Socket errors: /, ""); print }' "$work/wrk$1"); errors=${errors:-none}
  local requests; requests=$(awk '/requests in/ { print $1 }' "$work/wrk$1")
  echo "$rps $p50 $p99 $non2xx ${errors// /_} $(cpu_us_per_request $(( $(busy_ticks) - ticks_before )) "$requests")"
}
redis_csv() {  # a redis-benchmark --csv file → "rps p50_ms p99_ms"
  # The command is the first CSV field and holds commas and quotes: take fields from the end.
  tail -1 "$1" | awk -F'","' '{ gsub(/"$/, "", $NF); printf "%.0f %s %s\n", $(NF-6), $(NF-3), $(NF-1) }'
}
run_redis() {  # connections → "rps p50_ms p99_ms cpu_us_per_request"; sized to last about $duration s
  local n ticks_before
  n=$(awk -v r="$redis_warm_rps" -v d="$duration" 'BEGIN { n = r * d; if (n < 20000) n = 20000; printf "%d", n }')
  ticks_before=$(busy_ticks)
  redis-benchmark -h 127.0.0.1 -p "$redis_port" -c "$1" -n "$n" --csv EVAL "$redis_transform" 0 "$order" \
    >"$work/redis$1"
  echo "$(redis_csv "$work/redis$1") $(cpu_us_per_request $(( $(busy_ticks) - ticks_before )) "$n")"
}

# Warm-ups, not counted: corrald starts its 16 workers, Redis compiles the script.
wrk -t2 -c16 -d3s -s "$work/post.lua" "http://$address/v1/run" >/dev/null
redis-benchmark -h 127.0.0.1 -p "$redis_port" -c 16 -n 30000 --csv EVAL "$redis_transform" 0 "$order" >"$work/redis-warm"
read -r redis_warm_rps _ <<<"$(redis_csv "$work/redis-warm")"

read -r c16_rps c16_p50 c16_p99 c16_non2xx c16_errors c16_cpu <<<"$(run_wrk 16)"
read -r r16_rps r16_p50 r16_p99 r16_cpu <<<"$(run_redis 16)"
read -r c64_rps c64_p50 c64_p99 c64_non2xx c64_errors c64_cpu <<<"$(run_wrk 64)"
read -r r64_rps r64_p50 r64_p99 r64_cpu <<<"$(run_redis 64)"

kill "$(cat "$work/corrald.pid")"; wait "$(cat "$work/corrald.pid")" 2>/dev/null || true; rm "$work/corrald.pid"
redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
wait "$(cat "$work/redis.pid")" 2>/dev/null || true; rm -f "$work/redis.pid"
for c in 16 64; do
  n=$(awk '/Non-2xx/ { print $NF }' "$work/wrk$c")
  [ -z "$n" ] || note "wrk at $c connections saw $n responses that were not 200: $(grep -c '"status":[^2]' "$work/corrald.log") in the corrald log"
done

# ---- the table ----------------------------------------------------------------------------------
cold_p50=$(kv cold_p50_ms)
idle_rss=$(kv idle_rss_kib)
idle_mib=$(awk -v k="$idle_rss" 'BEGIN { printf "%.2f", k / 1024 }')
mib() { awk -v k="$1" 'BEGIN { printf "%.2f", k / 1024 }'; }
w16=$(ratio "$c16_rps" "$r16_rps")
w64=$(ratio "$c64_rps" "$r64_rps")
cold_ratio=$(ratio "$cold_p50" "$bwrap_ms")
cold_spare_p50=$(kv cold_spare_p50_ms)
cold_spare_ratio=$(ratio "$cold_spare_p50" "$bwrap_ms")

echo
echo "corral bench/jail.sh — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r), jail layers: $(kv layers); CPUs ${busy_before}% busy in the 3 s before the run"
echo
echo "| measure | corral | reference | ratio | target |"
echo "| --- | --- | --- | --- | --- |"
printf '| warm POST /v1/run vs Redis EVAL, 16 connections | %s req/s, p50 %s ms, p99 %s ms | %s req/s, p50 %s ms, p99 %s ms | %s× | ≥ 0.5×: %s |\n' \
  "$c16_rps" "$c16_p50" "$c16_p99" "$r16_rps" "$r16_p50" "$r16_p99" "$w16" "$(verdict "$w16" '>=' 0.5)"
printf '| warm POST /v1/run vs Redis EVAL, 64 connections | %s req/s, p50 %s ms, p99 %s ms | %s req/s, p50 %s ms, p99 %s ms | %s× | ≥ 0.5×: %s |\n' \
  "$c64_rps" "$c64_p50" "$c64_p99" "$r64_rps" "$r64_p50" "$r64_p99" "$w64" "$(verdict "$w64" '>=' 0.5)"
printf '| floor: a fresh `bwrap` + `lua5.4` sandbox per request, 16 at a time (trivial script, no HTTP) | %s req/s (corral at 16 connections) | %s runs/s | %s× | |\n' \
  "$c16_rps" "$floor_rps" "$(ratio "$c16_rps" "$floor_rps")"
printf '| non-200 responses / socket errors (16, 64 connections) | %s, %s / %s, %s | | | 0 |\n' \
  "$c16_non2xx" "$c64_non2xx" "${c16_errors//_/ }" "${c64_errors//_/ }"
printf '| cold start: new tenant'"'"'s first invocation with a spare ready, corrald'"'"'s default (p50 / p99 of %s) vs one bwrap spawn (median of %s) | %s ms / %s ms | %s ms | %s× | ≤ 0.5×: %s |\n' \
  "$(kv cold_tenants)" "$spawns" "$cold_spare_p50" "$(kv cold_spare_p99_ms)" "$bwrap_ms" "$cold_spare_ratio" "$(verdict "$cold_spare_ratio" '<=' 0.5)"
printf '| … the spare'"'"'s replacement is ready again after, p50 | %s ms | | | |\n' "$(kv cold_spare_refill_p50_ms)"
printf '| cold start with no spare: the worker is spawned on the run'"'"'s path (p50 / p99 of %s) vs one bwrap spawn | %s ms / %s ms | %s ms | %s× | ≤ 0.5×: %s |\n' \
  "$(kv cold_tenants)" "$cold_p50" "$(kv cold_p99_ms)" "$bwrap_ms" "$cold_ratio" "$(verdict "$cold_ratio" '<=' 0.5)"
printf '| … of which worker spawn (clone3 → exec, on the pool'"'"'s spawner thread), p50 | %s ms | | | |\n' "$(kv cold_spawn_p50_ms)"
printf '| cold start vs plain `lua5.4 -e` (median of %s) | %s ms | %s ms | %s× | |\n' \
  "$spawns" "$cold_p50" "$lua_ms" "$(ratio "$cold_p50" "$lua_ms")"
printf '| warm invocation in the pool, one caller, p50 | %s ms | | | |\n' "$(kv warm_single_p50_ms)"
printf '| CPU per request, whole machine (server and load generator), 16 / 64 connections | %s / %s µs | %s / %s µs (Redis) | | |\n' \
  "$c16_cpu" "$c64_cpu" "$r16_cpu" "$r64_cpu"
printf '| … of which inside the runtime: Engine::run of the transformation (no process, no HTTP), CPU | %s µs | | | |\n' "$(runtime_us JsonTransformation)"
printf '| … and the worker'"'"'s frame JSON (decode the request, encode the result), CPU | %s µs | | | |\n' "$(runtime_us FrameJson)"
printf '| idle worker memory, mean of %s: VmRSS (Pss, private) | %s MiB (%s, %s MiB) | | | < 4 MiB: %s |\n' \
  "$(kv idle_workers)" "$idle_mib" "$(mib "$(kv idle_pss_kib)")" "$(mib "$(kv idle_private_kib)")" "$(verdict "$idle_rss" '<' 4096)"
printf '| idle worker memory after 100 invocations each: VmRSS (Pss) | %s MiB (%s MiB) | | | < 4 MiB: %s |\n' \
  "$(mib "$(kv used_rss_kib)")" "$(mib "$(kv used_pss_kib)")" "$(verdict "$(kv used_rss_kib)" '<' 4096)"
printf '| worker teardown (kill, reap, remove cgroups), p50 / p99 | %s ms / %s ms | | | |\n' \
  "$(kv teardown_p50_ms)" "$(kv teardown_p99_ms)"
for t in 1 10 100 1000; do
  printf '| pool throughput, %s tenant(s) taking turns, 16 threads, 64 workers max | %s inv/s, p50 %s ms, p99 %s ms | %s workers spawned, %s errors, CPUs %s%% busy | | |\n' \
    "$t" "$(kv tp${t}_rps)" "$(kv tp${t}_p50_ms)" "$(kv tp${t}_p99_ms)" "$(kv tp${t}_spawned)" "$(kv tp${t}_errors)" "$(kv tp${t}_cpu_busy_pct)"
done

#!/usr/bin/env bash
# Many tenants on one node, through HTTP against a real corrald (issue 25, "Evidence"):
#   - N tenants, each with its own publisher token and its own published script
#     (`function handle(input) return {n = input.n} end`), invoked round-robin by wrk
#     (-t2 -c16, keep-alive, --latency) through POST /v1/tenants/T/scripts/echo/invoke?version=1,
#     for each N in one run: invocations/s, p50, p99, non-2xx answers and socket errors, the
#     workers started and evicted in the measured window, and how busy the CPUs were;
#   - memory per idle tenant: after the largest N's round, once the pool has settled, the drop in
#     MemAvailable (user and kernel memory) from before corrald started, divided by N; with the
#     kernel's part (SUnreclaim + KernelStack + PageTables) and the pool's own counts (/metrics);
#   - cold start: a new tenant's first invocation through HTTP, with a spare worker ready
#     (corrald's default) and with none (--spare-workers 0), each against one bwrap spawn timed
#     as bench/jail.sh times it, and against a warm invocation through the same curl.
# corrald runs with corrald's defaults plus CORRAL_FLAGS, and a policy giving every tenant quotas
# far above what the machine can serve, so that the bench measures the pool and not admission.
#
# Usage: bench/tenants.sh [seconds-per-round [N ...]]     (defaults: 15, and 1 100 1000 10000)
# Environment (the arguments win):
#   BENCH_TENANTS="1 100 1000 10000"   the tenant counts, one round each, in increasing order
#   BENCH_SECONDS=15                   measured seconds per round
#   BENCH_WARMUP=3                     seconds of wrk before each round, not counted
#   BENCH_COLD=30                      new tenants timed for each cold start (with and without a spare)
#   BENCH_SETUP_PARALLEL=8             requests in flight while tenants are set up
#   CORRAL_FLAGS="..."                 extra corrald flags for every start, e.g. the pool's caps:
#       CORRAL_FLAGS="--max-workers 10100 --max-idle-workers 10000" bench/tenants.sh
#     Unset: --worker-memory-budget 75% if this corrald has that flag, else nothing (before it,
#     corrald's defaults kept at most 64 workers alive, 32 idle).
# Needs: ninja -C build/release corrald corral-worker; wrk, curl, python3, bwrap, lua5.4
# (scripts/install-deps.sh). Run it as root, like corrald: for every jail layer, and so that it
# can raise the descriptor limit (corrald keeps descriptors per worker; its --check says how many).
# N = 1 100 1000 at 15 s takes about two minutes. 10,000 tenants took 17 minutes on 2026-12-07
# (2 cores): setting them up publishes 10,000 scripts, each publish runs the script's top level in
# a new worker, and a spawn got slower as workers accumulated (from 11 ms to 175 ms of wall time
# per tenant; in perf, the workers' writes to /proc/sys/user/max_*_namespaces, whose dentry
# lookup walks one entry per live user namespace: proc_sys_compare).
set -euo pipefail
cd "$(dirname "$0")/.."

note() { echo "tenants.sh: $*" >&2; }
seconds=${1:-${BENCH_SECONDS:-15}}
[ $# -gt 0 ] && shift
if [ $# -gt 0 ]; then tenant_counts="$*"; else tenant_counts=${BENCH_TENANTS:-1 100 1000 10000}; fi
warmup=${BENCH_WARMUP:-3}
cold_count=${BENCH_COLD:-30}
setup_parallel=${BENCH_SETUP_PARALLEL:-8}
threads=2
connections=16
for value in "$seconds" "$warmup" "$cold_count" "$setup_parallel" $tenant_counts; do
  [[ "$value" =~ ^[0-9]+$ ]] || { note "'$value' is not a whole number: see the usage at the top of bench/tenants.sh"; exit 1; }
done
tenant_counts=$(printf '%s\n' $tenant_counts | sort -n | uniq | tr '\n' ' ')
largest=$(printf '%s\n' $tenant_counts | tail -1)
[ "$largest" -gt 0 ] || { note "give at least one tenant count above 0"; exit 1; }

bin=build/release/src/cmd
for program in "$bin/corrald" "$bin/corral-worker"; do
  [ -x "$program" ] || { note "$program is missing: ninja -C build/release corrald corral-worker"; exit 1; }
done
for tool in wrk curl python3 bwrap lua5.4; do
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

# A private copy of the programs, so that a rebuild during the run cannot swap them.
mkdir "$work/bin"
cp "$bin/corrald" "$bin/corral-worker" "$work/bin/"
corrald=$work/bin/corrald worker=$work/bin/corral-worker

# ---- what the machine allows ----------------------------------------------------------------
# corrald keeps descriptors per worker and raises its soft limit to the hard one.
wanted=200000
nr_open=$(sysctl -n fs.nr_open 2>/dev/null || echo "$wanted")
[ "$nr_open" -ge "$wanted" ] || wanted=$nr_open
if ! ulimit -n "$wanted" 2>/dev/null; then
  note "could not raise the descriptor limit to $wanted (fs.nr_open $nr_open): it stays at the hard limit, $(ulimit -Hn); raising it takes root with CAP_SYS_RESOURCE"
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
[ "$(id -u)" = 0 ] || note "not root: corrald may lack the cgroup layer"
descriptors=$(ulimit -n)
pid_max=$(cat /proc/sys/kernel/pid_max)
user_namespaces=$(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo "?")
[ "$pid_max" -ge $((largest + 2000)) ] ||
  note "kernel.pid_max is $pid_max, $largest workers need more: raise it (sysctl kernel.pid_max)"

# Checked after CORRAL_FLAGS is known and the descriptor limit raised: corrald's own check of the
# jail layers and, where it has one, of what the machine allows its workers.
check_corrald() {
  "$corrald" --check --worker "$worker" "${corral_flags[@]}" >"$work/check" 2>&1 || true
  layers=$(awk '/would start with layers:/ { print $NF }' "$work/check")
  machine_limits=$(grep -i '^limits of the machine' "$work/check" | tr '\n' ' ' || true)
}
if [ -z "${CORRAL_FLAGS+set}" ]; then
  CORRAL_FLAGS=""
  # Room for every tenant's worker: 10,000 workers cost about 7 GB (0.7 MiB each, kernel included).
  if "$corrald" --help 2>/dev/null | grep -- '--worker-memory-budget' >/dev/null; then
    CORRAL_FLAGS="--worker-memory-budget 75%"
  fi
fi
read -r -a corral_flags <<<"$CORRAL_FLAGS"
# The start without spares: CORRAL_FLAGS without any --spare-workers of its own (corrald refuses
# a flag given twice), then --spare-workers 0.
no_spare_flags=()
skip_next=0
for flag in "${corral_flags[@]}"; do
  if [ "$skip_next" = 1 ]; then skip_next=0; continue; fi
  case "$flag" in
    --spare-workers) skip_next=1; continue ;;
    --spare-workers=*) continue ;;
  esac
  no_spare_flags+=("$flag")
done
no_spare_flags+=(--spare-workers 0)
check_corrald
[ -z "$machine_limits" ] || note "$machine_limits"

# ---- helpers ----------------------------------------------------------------------------------
# wrk prints latencies as 512.00us, 1.23ms or 1.02s: to milliseconds.
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
percentile() { sort -g | awk -v p="$1" '{ v[NR] = $1 } END { if (NR == 0) { print "n/a"; exit } i = int(p / 100 * (NR - 1) + 0.5) + 1; printf "%.3f", v[i] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "n/a") print "n/a"; else printf "%.2f", a / b }'; }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { if (v == "n/a") { print "n/a"; exit } ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 <= t + 0); print ok ? "met" : "**not met**" }'; }
thousands() { printf "%'d" "$1" 2>/dev/null || printf "%s" "$1"; }

cpu_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
busy_since() { local b t b2 t2; read -r b t <<<"$1"; read -r b2 t2 <<<"$(cpu_ticks)"; echo $(( 100 * (b2 - b) / (t2 - t > 0 ? t2 - t : 1) )); }
# corrald's workers are its children: "count private_kib pss_kib" summed over them (smaps_rollup),
# user memory only, and unlike MemAvailable not moved by other programs on the machine.
workers_memory() {
  cat /proc/"$corrald_pid"/task/*/children 2>/dev/null | tr ' ' '\n' | grep . >"$work/children" || true
  sed 's|.*|/proc/&/smaps_rollup|' "$work/children" | { xargs -r cat 2>/dev/null || true; } |
    awk -v n="$(wc -l <"$work/children")" '$1 ~ /^Private_(Clean|Dirty):$/ { p += $2 } $1 == "Pss:" { s += $2 } END { print n, p + 0, s + 0 }'
}
# CPU ticks of corrald, the workers it reaped and its live workers; and of this shell's children
# (wrk, during a round). What the machine spent beyond both went to other programs.
corral_ticks() {
  { echo "/proc/$corrald_pid/stat"
    cat /proc/"$corrald_pid"/task/*/children 2>/dev/null | tr ' ' '\n' | grep . | sed 's|.*|/proc/&/stat|' || true
  } | { xargs -r cat 2>/dev/null || true; } |
    awk '{ sub(/^.*\) /, ""); s += $12 + $13 + $14 + $15 } END { print s + 0 }'
}
# Like cpu_ticks, but only the time charged to tasks (user, nice, system): interrupts, softirqs
# (the loopback traffic) and steal are charged to no process.
task_cpu_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
shell_children_ticks() {
  times | tail -1 | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); t += p[1] * 60 + p[2] } printf "%.0f", t * 100 }'
}
meminfo_kib() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }
kernel_kib() { awk '$1 == "SUnreclaim:" || $1 == "KernelStack:" || $1 == "PageTables:" { s += $2 } END { print s }' /proc/meminfo; }

# Everything that went wrong, said again at the end: a bench with errors must not look clean.
problems=()
problem() { problems+=("$*"); note "ERROR: $*"; }
# What makes figures doubtful without being an error: said again under the tables.
cautions=()
caution() { cautions+=("$*"); note "$*"; }

start_corrald() {  # extra flags... → $corrald_pid, $address, $admin
  rm -f "$work/ready"
  "$corrald" --listen 127.0.0.1:0 --ready-file "$work/ready" --data-dir "$work/data" --worker "$worker" \
    --policy "$work/policy.yaml" "$@" >>"$work/corrald.log" 2>&1 &
  corrald_pid=$!
  for _ in $(seq 600); do [ -s "$work/ready" ] && break; kill -0 "$corrald_pid" 2>/dev/null || break; sleep 0.05; done
  [ -s "$work/ready" ] || { note "corrald did not start ($*); the end of its log:"; tail -20 "$work/corrald.log" >&2; exit 1; }
  address=$(cat "$work/ready")
  admin=$(head -1 "$work/data/admin.token")
}
stop_corrald() {  # → $stop_seconds: how long corrald took to stop
  local start=$EPOCHREALTIME
  kill -TERM "$corrald_pid"
  wait "$corrald_pid" 2>/dev/null || true
  corrald_pid=""
  stop_seconds=$(awk -v s="$start" -v e="$EPOCHREALTIME" 'BEGIN { printf "%.1f", e - s }')
}
fetch_metrics() { curl -sS --max-time 10 "http://$address/metrics" >"$work/metrics"; }
metric() { awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }' "$work/metrics"; }
workers() { metric "corral_workers{state=\"$1\"}"; }
invocations() { awk '$1 ~ /^corral_invocations_total\{/ { s += $2 } END { print s + 0 }' "$work/metrics"; }
failed_invocations() { awk '$1 ~ /^corral_invocations_total\{/ && $1 !~ /outcome="ok"/ { s += $2 } END { print s + 0 }' "$work/metrics"; }

# Until no worker is busy, starting or stopping and the idle count has held for 3 s (at most 90 s).
settle() {
  local last=-1 same=0 idle
  for _ in $(seq 90); do
    fetch_metrics
    idle=$(workers idle)
    if [ "$(workers busy)" = 0 ] && [ "$(workers starting)" = 0 ] && [ "$(workers stopping)" = 0 ] &&
       [ "$idle" = "$last" ]; then
      same=$((same + 1))
      [ "$same" -ge 3 ] && return 0
    else
      same=0
    fi
    last=$idle
    sleep 1
  done
  note "the pool had not settled after 90 s: the memory figures include workers still starting or stopping"
}

# ---- tenants: created, tokens made, script published, in parallel over keep-alive connections --
cat >"$work/setup.py" <<'PY'
import concurrent.futures, http.client, json, sys, threading, time

address, admin, prefix, first, last, parallel, out = sys.argv[1:8]
first, last, parallel = int(first), int(last), int(parallel)
host, port = address.rsplit(":", 1)
local = threading.local()
source = "function handle(input) return {n = input.n} end"
manifest = {"runtime": "lua5.4", "capabilities": ["log"], "deterministic": False,
            "description": "bench/tenants.sh"}

def call(token, path, body):
    for attempt in range(20):
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            local.connection.request("POST", path, json.dumps(body),
                                     {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
            response = local.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            del local.connection
            time.sleep(0.1)
            continue
        if response.status in (429, 503):  # corrald is busy spawning: wait as it asks
            time.sleep(min(float(response.getheader("Retry-After") or 1), 2))
            continue
        if response.status >= 300:
            sys.exit(f"tenants.sh: POST {path} answered {response.status}: {data[:300]!r}")
        return json.loads(data)
    sys.exit(f"tenants.sh: POST {path} failed 20 times: corrald is overloaded or gone")

def make(i):
    name = f"{prefix}{i}"
    call(admin, "/v1/tenants", {"name": name})
    token = call(admin, f"/v1/tenants/{name}/tokens", {"role": "publisher", "subject": "bench"})["token"]
    made = call(token, f"/v1/tenants/{name}/scripts/echo/versions", {"source": source, "manifest": manifest})
    if made.get("version") != 1:
        sys.exit(f"tenants.sh: publishing to {name} made version {made.get('version')}, not 1")
    return name, token

start, done, made = time.monotonic(), 0, {}
with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
    for i, pair in zip(range(first, last), pool.map(make, range(first, last))):
        made[i] = pair
        done += 1
        if done % 1000 == 0:
            print(f"tenants.sh: set up {first + done}/{last} tenants ({time.monotonic() - start:.1f} s)",
                  file=sys.stderr, flush=True)
with open(out, "a") as targets:
    for i in range(first, last):
        targets.write(f"{made[i][0]} {made[i][1]}\n")
print(f"{time.monotonic() - start:.1f}")
PY
setup_tenants() {  # prefix first last file → seconds taken
  python3 "$work/setup.py" "$address" "$admin" "$1" "$2" "$3" "$setup_parallel" "$4"
}

# wrk: each thread formats one request per tenant once, then sends them in turn. Thread k starts
# k/threads of the way round, so that together the threads take the tenants in turn.
cat >"$work/round.lua" <<LUA
local targets_file = "$work/round.targets"
local threads = $threads
local made = 0
function setup(thread)
  thread:set("thread_number", made)
  made = made + 1
end
local requests, position
function init(args)
  requests = {}
  local headers = {["content-type"] = "application/json"}
  for line in io.lines(targets_file) do
    local tenant, token = line:match("^(%S+) (%S+)\$")
    headers["authorization"] = "Bearer " .. token
    requests[#requests + 1] = wrk.format("POST", "/v1/tenants/" .. tenant .. "/scripts/echo/invoke?version=1",
                                         headers, '{"input":{"n":1}}')
  end
  position = (thread_number or 0) * math.floor(#requests / threads)
end
function request()
  position = position % #requests + 1
  return requests[position]
end
LUA

run_wrk() {  # seconds output-file
  wrk -t"$threads" -c"$connections" -d"$1s" --timeout 5s --latency -s "$work/round.lua" "http://$address" >"$2"
}

# ---- the run ----------------------------------------------------------------------------------
cat >"$work/policy.yaml" <<'YAML'
defaults:
  quotas: {rate_per_second: 1000000, burst: 1000000, concurrency: 10000, cpu_ms_per_minute: 3600000}
YAML

# The kernel frees a stopped corrald's workers (their cgroups, namespaces) for a while after it
# exits, a previous run's included: wait for the CPUs to be quiet before measuring.
wait_quiet() {  # what comes next
  local before busy
  for _ in $(seq 40); do
    before=$(cpu_ticks); sleep 3; busy=$(busy_since "$before")
    [ "$busy" -lt 20 ] && return 0
    note "the CPUs are ${busy}% busy; waiting for them to be quiet before $1"
  done
  caution "the CPUs were still ${busy}% busy after 2 minutes of waiting, before $1: other work skews those figures"
}
wait_quiet "the run"
before=$(cpu_ticks); sleep 3; busy_before=$(busy_since "$before")
[ "$busy_before" -lt 20 ] || caution "the CPUs were ${busy_before}% busy in the 3 s before the run: other work will skew the figures"
mem_before=$(meminfo_kib MemAvailable)
kernel_before=$(kernel_kib)

note "corrald ${CORRAL_FLAGS:-(its defaults)}; tenants: $tenant_counts; ${seconds} s per round after ${warmup} s of warm-up"
start_corrald "${corral_flags[@]}"
fetch_metrics
workers_max=$(metric corral_workers_max)
[ "$workers_max" -ge "$largest" ] ||
  note "corrald keeps at most $workers_max workers alive: past that many tenants taking turns, runs evict and spawn workers (raise the caps with CORRAL_FLAGS)"
: >"$work/targets"
tenants_made=0
rows=()
declare -A round_rps
for n in $tenant_counts; do
  if [ "$tenants_made" -lt "$n" ]; then
    note "setting up tenants $tenants_made..$((n - 1))"
    setup_seconds=$(setup_tenants t "$tenants_made" "$n" "$work/targets")
    note "  $((n - tenants_made)) tenants set up in $setup_seconds s"
    tenants_made=$n
  fi
  head -n "$n" "$work/targets" >"$work/round.targets"
  note "round: $n tenant(s) taking turns (${warmup} s warm-up, ${seconds} s measured)"
  [ "$warmup" = 0 ] || run_wrk "$warmup" "$work/warmup.out"
  fetch_metrics
  started_before=$(metric corral_workers_started_total) evicted_before=$(metric corral_workers_evicted_total)
  failed_before=$(failed_invocations)
  ticks=$(cpu_ticks) task_ticks=$(task_cpu_ticks) corral_before=$(corral_ticks) wrk_before=$(shell_children_ticks)
  run_wrk "$seconds" "$work/wrk$n"
  busy=$(busy_since "$ticks")
  others=$(awk -v m="$task_ticks" -v m2="$(task_cpu_ticks)" -v c="$(( $(corral_ticks) - corral_before ))" \
               -v w="$(( $(shell_children_ticks) - wrk_before ))" \
    'BEGIN { split(m, a, " "); split(m2, b, " "); busy = b[1] - a[1]; total = b[2] - a[2]
             o = total > 0 ? 100 * (busy - c - w) / total : 0; printf "%.0f", o < 0 ? 0 : o }')
  [ "$others" -lt 15 ] ||
    caution "$n tenants: other programs and kernel threads took ${others}% of the CPUs during the round (the kernel's work for the workers counts there too): its figures may not be this machine's best"
  fetch_metrics
  started=$(( $(metric corral_workers_started_total) - started_before ))
  evicted=$(( $(metric corral_workers_evicted_total) - evicted_before ))
  failed=$(( $(failed_invocations) - failed_before ))
  out=$work/wrk$n
  rps=$(awk '/Requests\/sec/ { printf "%.0f", $2 }' "$out")
  p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
  requests=$(awk '/requests in/ { print $1 }' "$out")
  non2xx=$(awk '/Non-2xx/ { print $NF }' "$out"); non2xx=${non2xx:-0}
  socket_errors=$(awk '/Socket errors/ { sub(/.*Socket errors: /, ""); print }' "$out"); socket_errors=${socket_errors:-none}
  errors="$non2xx non-2xx, socket errors: $socket_errors"
  if [ "$non2xx" != 0 ] || [ "$socket_errors" != none ] || [ "$failed" != 0 ]; then
    problem "$n tenants: $non2xx of $requests answers were not 2xx, socket errors: $socket_errors, $failed invocations did not end ok (corrald's log: $(grep -c '"status":[45]' "$work/corrald.log" || true) 4xx/5xx lines)"
    errors="**$errors**"
  fi
  round_rps[$n]=$rps
  rows+=("| $(thousands "$n") | $(thousands "$rps") | $p50 ms | $p99 ms | $errors | $started ($evicted) | ${busy}% (${others}%) |")
  note "  $rps inv/s, p50 $p50 ms, p99 $p99 ms; $errors; $started workers started, $evicted evicted"
done

# ---- memory per idle tenant, with the largest N's workers idle ------------------------------
note "letting the pool settle with $largest tenants"
settle
mem_after=$(meminfo_kib MemAvailable)
kernel_after=$(kernel_kib)
idle=$(workers idle) spare=$(workers spare) busy_workers=$(workers busy)
corrald_rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$corrald_pid/status")
read -r worker_processes workers_private_kib workers_pss_kib <<<"$(workers_memory)"
drop_kib=$((mem_before - mem_after))
kernel_kib_grown=$((kernel_after - kernel_before))
per_tenant=$(awk -v d="$drop_kib" -v n="$largest" 'BEGIN { printf "%.3f", d / n / 1024 }')
per_tenant_kernel=$(awk -v d="$kernel_kib_grown" -v n="$largest" 'BEGIN { printf "%.3f", d / n / 1024 }')
per_worker=$(awk -v d="$drop_kib" -v w="$((idle + spare))" 'BEGIN { if (w == 0) print "n/a"; else printf "%.3f", d / w / 1024 }')
[ "$idle" -ge "$largest" ] ||
  caution "only $idle workers are idle for $largest tenants: the figure per tenant is not what $largest warm tenants cost; the pool's caps decide (CORRAL_FLAGS)"

# The cold-start tenants are made now, after the memory reading; their workers go with this corrald.
setup_tenants cold 0 $((2 * cold_count)) "$work/cold.targets" >/dev/null
note "stopping corrald with $((idle + busy_workers)) workers"
stop_corrald
stop_largest_seconds=$stop_seconds
wait_quiet "the cold starts"

# ---- cold start: a new tenant's first invocation, with a spare and without ---------------------
invoke_ms() {  # tenant token → "status ms"
  curl -sS -o "$work/cold.answer" -w '%{http_code} %{time_total}\n' -H "authorization: Bearer $2" \
    -H 'content-type: application/json' -d '{"input":{"n":1}}' \
    "http://$address/v1/tenants/$1/scripts/echo/invoke?version=1" |
    awk '{ printf "%s %.3f\n", $1, $2 * 1000 }'
}
# Waits until the pool is quiet (no worker starting or stopping) and, with spares, has them all.
wait_ready_pool() {  # spares-wanted
  for _ in $(seq 200); do
    fetch_metrics
    [ "$(workers starting)" = 0 ] && [ "$(workers stopping)" = 0 ] && [ "$(workers spare)" -ge "$1" ] && return 0
    sleep 0.05
  done
  note "the pool did not get back $1 spare(s) and go quiet within 10 s"
}
cold_run() {  # first-line last-line spares-wanted label → files $work/cold-LABEL.ms (and warm)
  : >"$work/cold-$4.ms"; : >"$work/warm-$4.ms"
  local tenant token status ms
  while read -r tenant token; do
    wait_ready_pool "$3"
    read -r status ms <<<"$(invoke_ms "$tenant" "$token")"
    [ "$status" = 200 ] || problem "cold start ($4) of $tenant answered $status: $(head -c 300 "$work/cold.answer")"
    echo "$ms" >>"$work/cold-$4.ms"
    read -r status ms <<<"$(invoke_ms "$tenant" "$token")"
    [ "$status" = 200 ] || problem "the second invocation ($4) of $tenant answered $status: $(head -c 300 "$work/cold.answer")"
    echo "$ms" >>"$work/warm-$4.ms"
  done < <(sed -n "$1,$2p" "$work/cold.targets")
}
note "cold start with spares (corrald's --spare-workers, or CORRAL_FLAGS'): $cold_count new tenants"
start_corrald "${corral_flags[@]}"
sleep 1; fetch_metrics
spares=$(workers spare)
[ "$spares" -gt 0 ] || problem "corrald kept no spare worker ($CORRAL_FLAGS): the cold start 'with a spare' has none"
cold_run 1 "$cold_count" "$spares" spare
stop_corrald
note "cold start with --spare-workers 0: $cold_count new tenants"
start_corrald "${no_spare_flags[@]}"
cold_run $((cold_count + 1)) $((2 * cold_count)) 0 none
stop_corrald
for label in spare none; do
  [ "$(wc -l <"$work/cold-$label.ms")" = "$cold_count" ] || problem "cold start ($label): $(wc -l <"$work/cold-$label.ms") of $cold_count timed"
done

# One bwrap spawn, as bench/jail.sh times it (median of 30 sequential spawns, timed from bash).
note "30 bwrap spawns"
trivial_lua='local function handle(input) return {ok = true} end assert(handle({}).ok)'
bwrap_cmd=(bwrap --unshare-all --die-with-parent --ro-bind /usr /usr --symlink usr/lib /lib
           --symlink usr/lib64 /lib64 --symlink usr/bin /bin lua5.4 -e "$trivial_lua")
"${bwrap_cmd[@]}" || { note "bwrap cannot run lua5.4 here"; exit 1; }
for _ in $(seq 30); do
  start=$EPOCHREALTIME; "${bwrap_cmd[@]}"; end=$EPOCHREALTIME
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", (e - s) * 1000 }'
done >"$work/bwrap.ms"
bwrap_ms=$(median <"$work/bwrap.ms")

# ---- the tables -------------------------------------------------------------------------------
cold_spare_p50=$(median <"$work/cold-spare.ms") cold_spare_p99=$(percentile 99 <"$work/cold-spare.ms")
cold_none_p50=$(median <"$work/cold-none.ms") cold_none_p99=$(percentile 99 <"$work/cold-none.ms")
warm_p50=$(cat "$work/warm-spare.ms" "$work/warm-none.ms" | median)
spare_ratio=$(ratio "$cold_spare_p50" "$bwrap_ms")
none_ratio=$(ratio "$cold_none_p50" "$bwrap_ms")

echo
echo "corral bench/tenants.sh — $(date -u '+%Y-%m-%d %H:%M UTC'), tree $(git describe --always --dirty 2>/dev/null || echo '?'), $(nproc) cores, $(uname -r), jail layers: ${layers:-?}; CPUs ${busy_before}% busy in the 3 s before the run"
echo "corrald flags: ${CORRAL_FLAGS:-none (its defaults)} (workers alive at most: $workers_max); descriptors $descriptors, kernel.pid_max $pid_max, user.max_user_namespaces $user_namespaces${machine_limits:+; corrald --check: $machine_limits}"
echo "wrk -t$threads -c$connections --latency, ${seconds} s per round after ${warmup} s of warm-up; command: bench/tenants.sh $seconds $tenant_counts"
echo
echo "| tenants taking turns | invocations/s | p50 | p99 | errors | workers started (evicted) in the round | CPUs busy (of which other programs and kernel threads) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
echo
echo "| measure | corral | reference | ratio | target |"
echo "| --- | --- | --- | --- | --- |"
if [ -n "${round_rps[1000]:-}" ] && [ -n "${round_rps[1]:-}" ]; then
  throughput_ratio=$(ratio "${round_rps[1000]}" "${round_rps[1]}")
  printf '| throughput, 1,000 tenants vs 1 tenant | %s inv/s | %s inv/s | %s× | ≥ 0.8×: %s |\n' \
    "$(thousands "${round_rps[1000]}")" "$(thousands "${round_rps[1]}")" "$throughput_ratio" "$(verdict "$throughput_ratio" '>=' 0.8)"
fi
target=""
[ "$largest" -ge 10000 ] && target="≤ 0.3 MiB at 10,000: $(verdict "$per_tenant" '<=' 0.3)"
printf '| memory per idle tenant: drop in MemAvailable with %s tenants (%s idle workers, %s spare) over %s | %s MiB (%s MiB kernel: SUnreclaim, KernelStack, PageTables) | %s MiB in all; corrald'"'"'s own RSS %s MiB | | %s |\n' \
  "$(thousands "$largest")" "$(thousands "$idle")" "$spare" "$(thousands "$largest")" "$per_tenant" "$per_tenant_kernel" \
  "$(awk -v k="$drop_kib" 'BEGIN { printf "%.0f", k / 1024 }')" "$(awk -v k="$corrald_rss" 'BEGIN { printf "%.0f", k / 1024 }')" "$target"
printf '| … the same per worker alive (idle and spare) | %s MiB | | | |\n' "$per_worker"
printf '| user memory of the %s worker processes (smaps_rollup: private, Pss), per tenant | %s MiB, %s MiB | %s MiB and %s MiB per worker | | |\n' \
  "$(thousands "$worker_processes")" \
  "$(awk -v k="$workers_private_kib" -v n="$largest" 'BEGIN { printf "%.3f", k / n / 1024 }')" \
  "$(awk -v k="$workers_pss_kib" -v n="$largest" 'BEGIN { printf "%.3f", k / n / 1024 }')" \
  "$(awk -v k="$workers_private_kib" -v n="$worker_processes" 'BEGIN { if (n == 0) print "n/a"; else printf "%.3f", k / n / 1024 }')" \
  "$(awk -v k="$workers_pss_kib" -v n="$worker_processes" 'BEGIN { if (n == 0) print "n/a"; else printf "%.3f", k / n / 1024 }')"
printf '| corrald stopping (SIGTERM until exit) with %s workers | %s s | | | |\n' "$(thousands "$((idle + busy_workers + spare))")" "$stop_largest_seconds"
printf '| cold start through HTTP: a new tenant'"'"'s first invocation with a spare ready (p50 / p99 of %s) vs one bwrap spawn (median of 30) | %s ms / %s ms | %s ms | %s× | |\n' \
  "$cold_count" "$cold_spare_p50" "$cold_spare_p99" "$bwrap_ms" "$spare_ratio"
printf '| cold start through HTTP with no spare (`--spare-workers 0`; p50 / p99 of %s) vs one bwrap spawn | %s ms / %s ms | %s ms | %s× | ≤ 0.5×: %s |\n' \
  "$cold_count" "$cold_none_p50" "$cold_none_p99" "$bwrap_ms" "$none_ratio" "$(verdict "$none_ratio" '<=' 0.5)"
printf '| … the same tenant'"'"'s second invocation through the same curl (the HTTP and token part of both), p50 | %s ms | | | |\n' "$warm_p50"

if [ "${#cautions[@]}" -gt 0 ]; then
  echo
  echo "**Caution:**"
  printf -- '- %s\n' "${cautions[@]}"
fi
if [ "${#problems[@]}" -gt 0 ]; then
  echo
  echo "**THIS RUN HAD ERRORS** — the figures above include failed requests:"
  printf -- '- %s\n' "${problems[@]}"
  exit 1
fi

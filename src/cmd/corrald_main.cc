// corrald: the corral service. Serves the HTTP API (api/server.h) and runs invocations in
// jailed corral-worker processes (jail/jail.h), pooled per tenant (pool/tenant_pool.h).
#include <fcntl.h>
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include "api/api.h"
#include "api/events.h"
#include "api/openapi_document.h"
#include "api/run_answers.h"
#include "api/server.h"
#include "audit/audit.h"
#include "auth/auth.h"
#include "broker/sealing.h"
#include "broker/secrets.h"
#include "cache/result_cache.h"
#include "cluster/store_follower.h"
#include "invocation/cpu_lane.h"
#include "jobs/jobs.h"
#include "metrics/metrics.h"
#include "policy/policy_service.h"
#include "pool/jail_setup.h"
#include "pool/machine_limits.h"
#include "pool/process_executor.h"
#include "pool/tenant_pool.h"
#include "pool/worker_cost.h"
#include "registry/registry.h"
#include "runs/run_recorder.h"
#include "sched/admission.h"
#include "sched/circuit_breaker.h"
#include "sched/rate_buckets.h"
#include "store/data_dir_lock.h"
#include "store/store.h"
#include "usage/usage_ledger.h"

namespace {

namespace fs = std::filesystem;

struct Settings {
  std::string listen = "127.0.0.1:8080";
  std::string data_dir = "./data";
  std::string store;  // "": sqlite:<data-dir>/corral.db
  std::string worker = corral::default_worker_path();
  std::string ready_file;
  unsigned io_threads = 1;
  unsigned invocation_threads = 4;
  unsigned lanes = 0;  // 0: one per CPU corrald may use, at most one per invocation thread
  unsigned job_threads = 2;
  int64_t job_retention_seconds = 7 * 24 * 3600;
  int64_t job_lease_seconds = 30;
  std::string node_name;  // empty: <hostname>-<pid>-<random>
  size_t result_cache_bytes = corral::cache::kDefaultMaxBytes;
  size_t tenant_queue_depth = 64;
  size_t max_queued = 1024;
  int64_t token_cache_ms = 5'000;
  int64_t refusal_hold_ms = 1'000;
  int64_t denials_per_client_per_minute = 120;
  size_t max_connections_per_client = 256;
  std::optional<size_t> max_connections;  // unset: all the descriptors not kept for the rest
  // The pool is sized by memory (docs/operations.md, "The worker pool"): the count caps are
  // derived from the budget unless given.
  std::string worker_memory_budget = "25%";
  uint64_t memory_budget_bytes = 0;  // resolved by size_pool()
  std::optional<size_t> max_idle_workers;
  size_t metrics_top = corral::metrics::AttributedSeries::kDefaultMaxLabelled;
  size_t max_workers = 0;  // --max-workers, or derived by size_pool()
  std::optional<size_t> max_workers_given;
  std::string max_workers_bound;  // what set max_workers, for the log
  size_t warm_per_tenant = 1;
  size_t spare_workers = 2;
  uint64_t recycle_after = 1000;
  int64_t worker_start_timeout_ms = 5'000;
  size_t max_body_bytes = 1 << 20;
  corral::LimitsPolicy limits;
  std::vector<std::string> allowed_missing_layers;
  std::string cgroup_root = "/sys/fs/cgroup";
  std::string worker_id_range = corral::WorkerIdRange{}.to_string();
  std::string worker_network = "shared";
  bool check = false;
  bool allow_self_approval = false;
  std::string policy_file;
  std::string log_file;
  std::string alert_webhook;  // the operator's receiver of anomaly alerts, or none
};

std::unique_ptr<corral::JailSetup> prepare_jail(const Settings& settings) {
  corral::JailSetup::Options options;
  options.allowed_missing = {settings.allowed_missing_layers.begin(),
                             settings.allowed_missing_layers.end()};
  options.probe.cgroup_root = settings.cgroup_root;
  options.ceilings = corral::ceilings_for(settings.limits);
  options.worker_ids = corral::WorkerIdRange::parse(settings.worker_id_range);
  options.max_workers = settings.max_workers;
  options.share_network = settings.worker_network == "shared";
  return std::make_unique<corral::JailSetup>(options);
}

// What the workers corrald may run at once need of this machine (docs/operations.md, "Limits of
// the machine"): the one place that says how many workers that is.
corral::MachineLimitsNeed machine_limits_need(const Settings& settings) {
  corral::MachineLimitsNeed need;
  need.workers = settings.max_workers + settings.spare_workers;
  need.workers_setting = "--max-workers and --spare-workers";
  need.memory_setting = "--worker-memory-budget";
  need.memory_budget_bytes = settings.memory_budget_bytes;
  need.minimum_workers = std::max<size_t>(1, settings.spare_workers);
  // connection_cap's fewest: a --max-connections the limit cannot hold is its to refuse, saying so.
  need.connections_reserve = 64;
  // Where the kernel cannot scope a worker to the shared one, each still gets its own.
  need.own_network_namespace = settings.worker_network != "shared";
  return need;
}

// --worker-memory-budget in bytes and, unless --max-workers is given, the count cap derived from
// it: the workers the budget could hold at the least a worker costs, bounded by the worker id
// range and by what the machine has room for (descriptors, raised first where corrald may,
// processes, namespaces, cgroups), so that the budget, not a limit of the machine, decides how
// many workers live. Connections keep a quarter of the descriptors (or --max-connections).
void size_pool(Settings& settings) {
  settings.memory_budget_bytes = corral::parse_memory_amount(
      settings.worker_memory_budget, corral::machine_memory_bytes(), "--worker-memory-budget");
  if (settings.max_workers_given) {
    settings.max_workers = *settings.max_workers_given;
    settings.max_workers_bound = "--max-workers";
    return;
  }
  size_t workers = std::max<size_t>(1, settings.memory_budget_bytes / corral::kLeastWorkerBytes);
  std::string bound = "--worker-memory-budget";
  try {
    size_t ids = corral::WorkerIdRange::parse(settings.worker_id_range).count;
    size_t for_workers = ids > settings.spare_workers ? ids - settings.spare_workers : 1;
    if (for_workers < workers) {
      workers = for_workers;
      bound = "--worker-id-range";
    }
  } catch (const std::invalid_argument&) {
    // The jail refuses the range at start, saying why.
  }
  settings.max_workers = workers;
  corral::MachineLimitsNeed need = machine_limits_need(settings);
  corral::MachineView view;
  view.cgroup_root = settings.cgroup_root;
  corral::raise_descriptor_limit_for(corral::descriptors_needed(need), view);
  corral::MachineValues values = corral::read_machine_values(view);
  constexpr uint64_t kFewestConnections = 64;
  uint64_t connections = settings.max_connections.value_or(0);
  need.connections_reserve =
      connections > 0 ? connections
                      : std::max(kFewestConnections, values.descriptors_soft.value_or(1024) / 4);
  for (const auto& finding : corral::find_shortfalls(need, values)) {
    // Memory is the budget's own business: a budget above what is available is warned of.
    if (finding.limit.starts_with("memory")) continue;
    size_t room = finding.workers_possible > settings.spare_workers
                      ? finding.workers_possible - settings.spare_workers
                      : 1;
    if (room < workers) {
      workers = room;
      bound = finding.limit;
    }
  }
  settings.max_workers = workers;
  settings.max_workers_bound = bound;
}

// Raises corrald's descriptor limit to what its workers need (with CAP_SYS_RESOURCE, so a root
// corrald needs no ulimit change), then finds the limits of the machine they would still run
// into; a refusal for each that leaves room for fewer workers than the configured minimum.
struct MachineLimitsCheck {
  corral::DescriptorRaise raise;
  std::vector<corral::MachineLimitFinding> findings;
  std::vector<std::string> refusals;
};
MachineLimitsCheck check_machine_limits(const Settings& settings) {
  corral::MachineLimitsNeed need = machine_limits_need(settings);
  corral::MachineView view;
  view.cgroup_root = settings.cgroup_root;
  MachineLimitsCheck check;
  check.raise = corral::raise_descriptor_limit_for(corral::descriptors_needed(need), view);
  check.findings = corral::find_shortfalls(need, corral::read_machine_values(view));
  for (const auto& finding : check.findings) {
    if (finding.workers_possible >= need.minimum_workers) continue;
    check.refusals.push_back("this machine has room for " +
                             std::to_string(finding.workers_possible) +
                             (finding.workers_possible == 1 ? " worker" : " workers") +
                             ", fewer than the " + std::to_string(need.minimum_workers) +
                             " corrald needs at least (--spare-workers): " + finding.message);
  }
  return check;
}

// --check: every layer, whether this machine provides it, and whether corrald would start.
int check_layers(const Settings& settings) {
  corral::JailSetup::Options options;
  options.probe.cgroup_root = settings.cgroup_root;
  options.ceilings = corral::ceilings_for(settings.limits);
  options.share_network = settings.worker_network == "shared";
  corral::JailSetup jail(corral::JailSetup::accept_any_missing(options));
  for (const auto& status : jail.statuses()) {
    std::printf("%-13s %-8s %s\n", std::string(corral::jail::to_string(status.layer)).c_str(),
                jail.active().has(status.layer) ? "active" : "MISSING", status.detail.c_str());
  }
  auto refused = jail.refusals(
      {settings.allowed_missing_layers.begin(), settings.allowed_missing_layers.end()});
  MachineLimitsCheck machine = check_machine_limits(settings);
  std::printf("\nlimits of the machine for %zu workers: %s\n",
              machine_limits_need(settings).workers, machine.raise.report.c_str());
  for (const auto& finding : machine.findings)
    std::printf("limit short: %s\n", finding.message.c_str());
  refused.insert(refused.end(), machine.refusals.begin(), machine.refusals.end());
  try {
    for (auto& problem : corral::worker_id_range_problems(
             corral::WorkerIdRange::parse(settings.worker_id_range), settings.max_workers))
      refused.push_back(problem);
  } catch (const std::invalid_argument& bad) {
    refused.push_back(bad.what());
  }
  for (const auto& refusal : refused)
    std::printf("\ncorrald would refuse to start: %s\n", refusal.c_str());
  if (!refused.empty()) return 1;
  std::printf("\ncorrald would start with layers: %s\n", jail.active().to_string().c_str());
  return 0;
}

void log_event(spdlog::level::level_enum level, const std::string& message,
               nlohmann::json fields = nlohmann::json::object()) {
  fields["level"] = spdlog::level::to_string_view(level).data();
  fields["msg"] = message;
  spdlog::log(level, fields.dump());
}

// --policy FILE: stored as the next version unless the store's newest is the same text. An invalid
// document is refused with every problem as FILE:LINE:COLUMN, in the log, and at start-up on
// stderr too. On SIGHUP (`at_start` false) a file that cannot be read or is not valid leaves the
// policy in force as it is, and the log says why.
bool load_policy_file(const std::string& file, corral::policy::PolicyService& policy,
                      bool at_start) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream text;
  if (in) text << in.rdbuf();
  int64_t before = policy.current()->version;
  if (!in || in.bad()) {
    std::string why = std::strerror(errno);
    nlohmann::json fields = {
        {"file", file}, {"error", why}, {"hint", "pass --policy a readable YAML file"}};
    if (!at_start) fields["policy_version_kept"] = before;
    log_event(spdlog::level::err,
              at_start ? "cannot read the policy file"
                       : "cannot read the policy file again; the policy in force is kept",
              fields);
    if (at_start)
      std::fprintf(stderr, "corrald: cannot read --policy %s: %s\n", file.c_str(), why.c_str());
    return false;
  }
  try {
    auto loaded = at_start ? policy.load_at_startup(text.str(), file)
                           : policy.load_file(text.str(), file, "on SIGHUP");
    log_event(spdlog::level::info, at_start ? "policy loaded" : "policy reloaded",
              {{"event", at_start ? "policy.load" : "policy.reload"},
               {"file", file},
               {"policy_version", loaded.snapshot->version},
               {"stored_as_new_version", loaded.snapshot->version != before},
               {"changes", loaded.diff}});
    return true;
  } catch (const corral::policy::PolicyInvalid& invalid) {
    nlohmann::json problems = nlohmann::json::array();
    if (at_start) {
      std::fprintf(stderr,
                   "corrald: the policy in %s is not valid (%zu problems); nothing was stored\n",
                   file.c_str(), invalid.problems().size());
    }
    for (const auto& problem : invalid.problems()) {
      std::string where = file;
      if (problem.line > 0)
        where += ":" + std::to_string(problem.line) + ":" + std::to_string(problem.column);
      std::string path = problem.path.empty() ? "" : problem.path + ": ";
      if (at_start)
        std::fprintf(stderr, "%s: %s%s\n", where.c_str(), path.c_str(), problem.message.c_str());
      problems.push_back({{"where", where}, {"path", problem.path}, {"message", problem.message}});
    }
    if (at_start) {
      log_event(spdlog::level::err, "refusing to start: the policy file is not valid",
                {{"file", file},
                 {"problems", problems},
                 {"hint",
                  "fix each problem at the line and column given and start corrald again; "
                  "docs/policy.md describes every key"}});
    } else {
      log_event(spdlog::level::err, "the policy file is not valid; the policy in force is kept",
                {{"file", file},
                 {"problems", problems},
                 {"policy_version_kept", before},
                 {"hint",
                  "fix each problem at the line and column given and send SIGHUP again; "
                  "docs/policy.md describes every key"}});
    }
    return false;
  } catch (const std::exception& failure) {
    // The document was valid but could not be stored (the disk, say): nothing changed.
    log_event(spdlog::level::err,
              at_start ? "cannot store the policy file"
                       : "cannot store the policy file; the policy in force is kept",
              {{"file", file}, {"error", failure.what()}, {"policy_version_kept", before}});
    if (at_start)
      std::fprintf(stderr, "corrald: cannot store --policy %s: %s\n", file.c_str(), failure.what());
    return false;
  }
}

// Points standard output, where the log is written, at `file` (appended to): at start with
// --log-file, and again on SIGHUP, so that a file logrotate has moved away is let go and a new one
// is made. Lines being written meanwhile go whole to one file or the other.
bool open_log_file(const std::string& file) {
  int fd = open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    std::string why = std::strerror(errno);
    log_event(spdlog::level::err, "cannot open the log file",
              {{"file", file}, {"error", why}, {"hint", "pass --log-file a writable path"}});
    std::fprintf(stderr, "corrald: cannot open --log-file %s: %s\n", file.c_str(), why.c_str());
    return false;
  }
  std::fflush(stdout);
  bool moved = dup2(fd, STDOUT_FILENO) >= 0;
  close(fd);
  return moved;
}

// SIGHUP, as daemons take it: the log file is opened again and the --policy file read again.
void reload_on_hangup(const Settings& settings, corral::policy::PolicyService& policy) {
  if (!settings.log_file.empty()) open_log_file(settings.log_file);
  log_event(spdlog::level::info, "SIGHUP: reopened the log and reloading the policy file",
            {{"log_file", settings.log_file.empty() ? nlohmann::json(nullptr)
                                                    : nlohmann::json(settings.log_file)},
             {"policy_file", settings.policy_file.empty() ? nlohmann::json(nullptr)
                                                          : nlohmann::json(settings.policy_file)}});
  if (!settings.policy_file.empty()) load_policy_file(settings.policy_file, policy, false);
}

// "HOST:PORT", "[V6]:PORT" → host and port.
std::pair<std::string, uint16_t> split_listen(const std::string& listen) {
  auto colon = listen.rfind(':');
  auto fail = [&](const std::string& why) {
    throw CLI::ValidationError(
        "--listen", "'" + listen + "' " + why + "; expected HOST:PORT such as 127.0.0.1:8080");
  };
  if (colon == std::string::npos) fail("has no port");
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty()) fail("has no host");
  int port = -1;
  try {
    size_t used = 0;
    port = std::stoi(listen.substr(colon + 1), &used);
    if (used != listen.size() - colon - 1) port = -1;
  } catch (const std::exception&) {
  }
  if (port < 0 || port > 65535) fail("has no valid port");
  return {host, static_cast<uint16_t>(port)};
}

void add_limit_flags(CLI::App& app, Settings& settings) {
  struct Flag {
    const char* name;
    int64_t corral::Limits::*member;
    const char* unit;
  };
  static constexpr Flag kFlags[] = {
      {"fuel", &corral::Limits::fuel, "Lua VM instructions"},
      {"memory-bytes", &corral::Limits::memory_bytes, "bytes of Lua heap"},
      {"timeout-ms", &corral::Limits::timeout_ms, "milliseconds of wall time"},
      {"output-bytes", &corral::Limits::output_bytes, "bytes of output JSON"},
      {"log-bytes", &corral::Limits::log_bytes, "bytes of captured logs"}};
  for (const Flag& flag : kFlags) {
    app.add_option(std::string("--default-") + flag.name, settings.limits.defaults.*(flag.member),
                   std::string("limit applied when a request names none, in ") + flag.unit)
        ->capture_default_str()
        ->check(CLI::PositiveNumber)
        ->group("Limits");
    app.add_option(std::string("--max-") + flag.name, settings.limits.maxima.*(flag.member),
                   std::string("largest value a request may ask for, in ") + flag.unit)
        ->capture_default_str()
        ->check(CLI::PositiveNumber)
        ->group("Limits");
  }
}

void check_limits(const corral::LimitsPolicy& policy) {
  const auto& d = policy.defaults;
  const auto& m = policy.maxima;
  std::pair<const char*, bool> checks[] = {{"fuel", d.fuel <= m.fuel},
                                           {"memory-bytes", d.memory_bytes <= m.memory_bytes},
                                           {"timeout-ms", d.timeout_ms <= m.timeout_ms},
                                           {"output-bytes", d.output_bytes <= m.output_bytes},
                                           {"log-bytes", d.log_bytes <= m.log_bytes}};
  for (auto [name, ok] : checks) {
    if (!ok) {
      throw CLI::ValidationError(
          std::string("--default-") + name,
          std::string("is above --max-") + name + "; lower the default or raise the maximum");
    }
  }
}

// A tenant's queue deeper than the global bound could never fill: the bound would always answer
// first, which is surely not what the operator meant.
void check_queue_bounds(const Settings& settings) {
  if (settings.tenant_queue_depth > settings.max_queued) {
    throw CLI::ValidationError(
        "--tenant-queue-depth",
        std::to_string(settings.tenant_queue_depth) + " is above --max-queued " +
            std::to_string(settings.max_queued) +
            ", so one tenant's queue could never fill; lower --tenant-queue-depth or raise "
            "--max-queued");
  }
}

// A --config key that names no option: CLI11 skips those, so a misspelt key ("max-worker")
// would leave corrald running on a default the operator meant to change. Says which key, in which
// file and on which line, instead of CLI11's own message.
std::optional<std::string> unknown_config_key(const CLI::App& app) {
  const CLI::Option* config = app.get_config_ptr();
  if (config == nullptr || config->count() == 0) return std::nullopt;
  std::string file = config->as<std::string>();
  std::ifstream input(file);
  for (const CLI::ConfigItem& item : app.get_config_formatter()->from_config(input)) {
    if (item.name == "++" || item.name == "--") continue;  // a [section] opening or closing
    if (item.parents.empty() && app.get_option_no_throw("--" + item.name) != nullptr) continue;
    std::string key = item.fullname();
    std::ifstream lines(file);
    int number = 0, found = 0;
    for (std::string line; found == 0 && std::getline(lines, line);) {
      ++number;
      size_t start = line.find_first_not_of(" \t\"");
      if (start == std::string::npos || line.compare(start, item.name.size(), item.name) != 0)
        continue;
      size_t after = line.find_first_not_of(" \t\"", start + item.name.size());
      if (after != std::string::npos && line[after] == '=') found = number;
    }
    return file + (found ? ":" + std::to_string(found) : "") + ": unknown key \"" + key +
           "\"; corrald has no option --" + key +
           ". Keys are corrald's long option names without the dashes (corrald --help): correct "
           "or remove it";
  }
  return std::nullopt;
}

// Raises the soft descriptor limit to the hard one, which any process may do: connections take
// one descriptor each, and Debian's soft default of 1,024 would put a low ceiling on them. Returns
// the limit now in force.
rlim_t raise_descriptor_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return limit.rlim_cur;
}

// The descriptors kept for everything but connections: one per worker (its channel), and the
// store, the logs, capability calls and spawns in progress.
size_t reserved_descriptors(const Settings& settings) {
  return settings.max_workers + settings.spare_workers + 256;
}

// --max-connections, or by default every descriptor not kept for the rest; nullopt, said on
// stderr and in the log, when the descriptor limit leaves too few, or fewer than asked for.
std::optional<size_t> connection_cap(const Settings& settings) {
  constexpr size_t kFewestConnections = 64;
  rlim_t limit = raise_descriptor_limit();
  size_t reserved = reserved_descriptors(settings);
  size_t available = limit > reserved ? static_cast<size_t>(limit) - reserved : 0;
  size_t wanted = settings.max_connections.value_or(std::max(available, kFewestConnections));
  if (wanted == 0 || wanted <= available) return wanted;
  std::string what = "corrald may open " + std::to_string(limit) +
                     " descriptors (RLIMIT_NOFILE) and keeps " + std::to_string(reserved) +
                     " of them for its workers (--max-workers, --spare-workers) and its store, "
                     "which leaves " +
                     std::to_string(available) + " for connections, fewer than the " +
                     std::to_string(wanted) +
                     (settings.max_connections ? " --max-connections asks for" : " it needs");
  std::string hint = "raise the descriptor limit (ulimit -n 65536, or LimitNOFILE= for systemd)" +
                     std::string(settings.max_connections ? ", or lower --max-connections"
                                                          : ", or lower --max-workers");
  log_event(spdlog::level::err, "refusing to start", {{"error", what}, {"hint", hint}});
  std::fprintf(stderr, "corrald: %s; %s\n", what.c_str(), hint.c_str());
  return std::nullopt;
}

// Logs what check_machine_limits() did and found; false, said on stderr too, when corrald
// cannot run as configured.
bool start_within_machine_limits(const Settings& settings) {
  MachineLimitsCheck machine = check_machine_limits(settings);
  log_event(spdlog::level::info, "descriptor limit", {{"detail", machine.raise.report}});
  for (const auto& finding : machine.findings) {
    log_event(spdlog::level::warn, finding.message,
              {{"limit", finding.limit},
               {"needed", finding.needed},
               {"available", finding.available},
               {"workers_possible", finding.workers_possible},
               {"hint", finding.setting}});
  }
  for (const auto& refusal : machine.refusals) {
    log_event(spdlog::level::err, "refusing to start", {{"error", refusal}});
    std::fprintf(stderr, "corrald: %s\n", refusal.c_str());
  }
  return machine.refusals.empty();
}

int serve(const Settings& settings) {
  if (!settings.log_file.empty() && !open_log_file(settings.log_file)) return 1;
  auto [host, port] = split_listen(settings.listen);
  if (!start_within_machine_limits(settings)) return 2;
  std::optional<size_t> max_connections = connection_cap(settings);
  if (!max_connections) return 2;
  std::error_code error;
  // Private when corrald makes it: it holds the database and the first admin token.
  if (fs::create_directories(settings.data_dir, error))
    fs::permissions(settings.data_dir, fs::perms::owner_all, error);
  if (error) {
    log_event(spdlog::level::err, "cannot create the data directory",
              {{"data_dir", settings.data_dir},
               {"error", error.message()},
               {"hint", "pass a writable --data-dir"}});
    return 1;
  }
  if (access(settings.worker.c_str(), X_OK) != 0) {
    log_event(spdlog::level::err, "the worker binary is not executable",
              {{"worker", settings.worker},
               {"hint", "build corral-worker beside corrald or pass --worker PATH"}});
    return 1;
  }

  // Block the signals corrald handles in every thread; one thread waits for them.
  sigset_t handled_signals;
  sigemptyset(&handled_signals);
  sigaddset(&handled_signals, SIGTERM);
  sigaddset(&handled_signals, SIGINT);
  sigaddset(&handled_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &handled_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Held until corrald exits: a second corrald on this directory refuses to start.
  std::optional<corral::store::DataDirLock> data_dir_lock;
  try {
    data_dir_lock.emplace(settings.data_dir);
  } catch (const std::exception& failure) {
    nlohmann::json fields = {{"data_dir", settings.data_dir}, {"error", failure.what()}};
    if (auto* in_use = dynamic_cast<const corral::store::DataDirInUse*>(&failure);
        in_use && in_use->holder() > 0)
      fields["holder_pid"] = in_use->holder();
    log_event(spdlog::level::err, "refusing to start: the data directory is locked", fields);
    std::fprintf(stderr, "corrald: %s\n", failure.what());
    return 1;
  }

  std::unique_ptr<corral::store::Store> store;
  try {
    try {
      store = corral::store::open_store_at(settings.store, settings.data_dir);
    } catch (const corral::store::StorageUnavailable& full) {
      // A full disk: the space kept for it lets the store open, to serve reads (docs/operations.md,
      // "A full disk").
      if (!full.disk_full() || !corral::store::release_space_reserve(settings.data_dir)) throw;
      log_event(spdlog::level::warn,
                "the disk of the data directory is full: gave back corrald's space reserve to "
                "open the store; reads are served, writes answered 507 until space is freed",
                {{"data_dir", settings.data_dir},
                 {"error", full.what()},
                 {"hint",
                  "free space on this disk; corrald takes its reserve again at the next "
                  "start"}});
      store = corral::store::open_store_at(settings.store, settings.data_dir);
    }
  } catch (const std::exception& failure) {
    log_event(spdlog::level::err, "cannot open the store",
              {{"data_dir", settings.data_dir},
               {"store", corral::store::redact_store_url(settings.store)},
               {"error", failure.what()}});
    std::fprintf(stderr, "corrald: %s\n", failure.what());
    return 1;
  }
  corral::store::keep_space_reserve(settings.data_dir);
  corral::audit::AuditTrail audit(*store);
  try {
    if (auto made = corral::auth::bootstrap_admin(*store, audit, settings.data_dir,
                                                  std::getenv("CORRAL_ADMIN_TOKEN"))) {
      nlohmann::json fields = {{"token_id", made->token_id}, {"from", made->from}};
      if (!made->file.empty()) {
        fields["file"] = made->file.string();
        fields["hint"] =
            "read the token from this file (mode 0600) and keep it safe; it is not shown again";
      }
      log_event(spdlog::level::warn, "created an admin token", fields);
    }
  } catch (const std::exception& failure) {
    log_event(spdlog::level::err, "cannot create the first admin token",
              {{"error", failure.what()}});
    std::fprintf(stderr, "corrald: %s\n", failure.what());
    return 1;
  }

  // Secrets are sealed under <data-dir>/master.key; the policy in force is the newest stored
  // version, or --policy FILE, or the built-in safe default.
  std::unique_ptr<corral::broker::Sealer> sealer;
  std::unique_ptr<corral::policy::PolicyService> policy;
  try {
    sealer = std::make_unique<corral::broker::Sealer>(
        corral::broker::Sealer::open_or_create(settings.data_dir));
    policy = std::make_unique<corral::policy::PolicyService>(*store, audit);
  } catch (const std::exception& failure) {
    log_event(spdlog::level::err, "refusing to start", {{"error", failure.what()}});
    std::fprintf(stderr, "corrald: %s\n", failure.what());
    return 2;
  }
  corral::broker::SecretsService secrets(*store, *sealer);
  if (!settings.policy_file.empty()) {
    if (!load_policy_file(settings.policy_file, *policy, true)) return 2;
  } else if (auto current = policy->current(); current->version == 0) {
    log_event(spdlog::level::warn, "no policy set: the built-in safe default applies",
              {{"policy_version", 0},
               {"capabilities", {"log"}},
               {"hint",
                "scripts get ctx.log only and small limits; set a policy with PUT "
                "/v1/policy (admin) or start with --policy FILE (see "
                "examples/policy.yaml)"}});
  } else {
    log_event(spdlog::level::info, "policy in force",
              {{"policy_version", current->version}, {"created_by", current->created_by}});
  }

  std::unique_ptr<corral::JailSetup> jail;
  try {
    jail = prepare_jail(settings);
  } catch (const std::exception& refusal) {
    log_event(spdlog::level::err, "refusing to start", {{"error", refusal.what()}});
    std::fprintf(stderr, "corrald: %s\n", refusal.what());
    return 2;
  }
  log_event(spdlog::level::info, "jail ready", {{"layers", jail->describe()}});
  if (settings.worker_network == "shared" && !jail->network_shared() &&
      !jail->why_network_not_shared().empty()) {
    log_event(spdlog::level::warn, "each worker gets a network namespace of its own",
              {{"why", jail->why_network_not_shared()},
               {"cost", "about 180 KiB of kernel memory per worker (docs/jail.md)"}});
  }
  // What a worker of this jail costs the machine, measured with a few (docs/operations.md, "The
  // worker pool"); the budget counts every worker at that and what its own heap grows to.
  corral::WorkerCost worker_cost{.kernel_bytes = corral::kLeastWorkerBytes, .user_bytes = 0};
  try {
    worker_cost = corral::measure_worker_cost(
        *jail, settings.worker, 16, std::chrono::milliseconds(settings.worker_start_timeout_ms));
  } catch (const std::exception& failure) {
    log_event(spdlog::level::warn, "cannot measure what a worker costs",
              {{"error", failure.what()},
               {"hint", "the pool counts each worker at the least a worker costs until then"}});
  }
  size_t worker_bytes = worker_cost.kernel_bytes + worker_cost.user_bytes;
  log_event(spdlog::level::info, "worker pool sized",
            {{"memory_budget_mib", settings.memory_budget_bytes >> 20},
             {"worker_kernel_kib", worker_cost.kernel_bytes >> 10},
             {"worker_user_kib", worker_cost.user_bytes >> 10},
             {"workers_the_budget_holds", settings.memory_budget_bytes / worker_bytes},
             {"max_workers", settings.max_workers},
             {"max_workers_set_by", settings.max_workers_bound}});
  corral::TenantPool executor(
      {.max_workers = settings.max_workers,
       .warm_per_tenant = settings.warm_per_tenant,
       .max_idle = settings.max_idle_workers.value_or(settings.max_workers),
       .recycle_after = settings.recycle_after,
       .kill_grace_ms = 50,
       .spare_workers = settings.spare_workers,
       .memory_budget_bytes = settings.memory_budget_bytes,
       .worker_kernel_bytes = worker_cost.kernel_bytes,
       .worker_user_bytes = worker_cost.user_bytes,
       .on_start_failure =
           [](const corral::TenantPool::StartFailureReport& report) {
             log_event(spdlog::level::warn, "cannot start a worker",
                       {{"error", report.why},
                        {"tenant", report.tenant},
                        {"failures_since_last_report", report.failures},
                        {"hint",
                         "runs that needed a new worker are rejected (503) until workers start "
                         "again; corrald --check lists the jail layers this machine provides, "
                         "and this warning repeats at most every 10 s"}});
           },
       .start_failure_report_ms = 10'000,
       .start_timeout_ms = settings.worker_start_timeout_ms},
      [&](const std::string& tenant) {
        return std::make_unique<corral::WorkerProcess>(jail->spec_for(settings.worker, tenant));
      });
  nlohmann::json layers = {{{"name", "lua-environment"}, {"active", true}},
                           {{"name", "fuel-memory-output-log-limits"}, {"active", true}},
                           {{"name", "supervisor-deadline-kill"}, {"active", true}}};
  for (auto& layer : jail->describe()) layers.push_back(layer);
  corral::metrics::Registry metrics;
  metrics.limit_attributed_series(settings.metrics_top);
  metrics.watch_worker_pool([&executor, &settings] {
    auto pool = executor.stats();
    return corral::metrics::Registry::WorkerPoolFigures{
        .busy = pool.busy,
        .idle = pool.idle - pool.spare,
        .spare = pool.spare,
        .starting = pool.starting,
        .stopping = pool.stopping,
        .max_workers = settings.max_workers,
        .memory_budget_bytes = pool.memory_budget_bytes,
        .memory_bytes = pool.accounted_bytes,
        .started = pool.spawned,
        .start_failures = pool.start_failures,
        .retired = pool.retired,
        .evicted = pool.evicted};
  });
  // The only door from scripts to the outside: capability calls are answered here.
  corral::broker::Broker broker(*store, *sealer, audit, metrics);
  if (settings.allow_self_approval) {
    log_event(spdlog::level::warn,
              "--allow-self-approval is deprecated: every tenant's publishers may approve their "
              "own versions, whatever the policy says; set governance.self_approval_allowed in "
              "the policy instead");
  }
  corral::registry::Registry registry(*store, executor,
                                      {.allow_self_approval_for_all = settings.allow_self_approval,
                                       .probe_limits = settings.limits.defaults});
  // Admission by the policy's quotas before every run (docs/operations.md).
  corral::sched::Admission admission;
  corral::sched::RateBuckets publish_rate;  // per tenant
  // Tokens that authenticated recently, so that requests need not ask the store each time
  // (docs/operations.md, "Token cache").
  corral::auth::TokenCache tokens({.ttl_ms = settings.token_cache_ms, .max_entries = 10'000});
  metrics.watch_token_cache([&tokens] {
    auto figures = tokens.stats();
    return corral::metrics::Registry::TokenCacheFigures{figures.hits, figures.misses,
                                                        static_cast<int64_t>(figures.entries)};
  });
  // On a store other nodes share, their policy changes and token revocations reach this node
  // within a quarter second (docs/operations.md, "Running several nodes").
  corral::cluster::StoreFollower follower(
      *store, *policy, settings.token_cache_ms > 0 ? &tokens : nullptr,
      {.on_change =
           [](const std::string& what, const std::string& detail) {
             log_event(spdlog::level::info, "another node changed the " + what,
                       {{"detail", detail}});
           },
       .on_problem =
           [](const std::string& problem) {
             log_event(spdlog::level::warn, "cannot follow the other nodes' changes",
                       {{"error", problem},
                        {"hint",
                         "check the store; this node keeps what it has in force and "
                         "asks again every 250 ms"}});
           }});
  // A circuit breaker per script version, from the policy's circuit_breaker settings.
  corral::sched::CircuitBreakers breakers;
  // Results of deterministic, capability-free versions; the policy's cache.enabled per tenant.
  corral::cache::ResultCache result_cache(settings.result_cache_bytes);
  // The last runs of each script (the policy's runs section), written off the invocation's path.
  corral::runs::RunRecorder run_recorder(*store);
  // Usage for billing, per tenant, script and hour, written to the store every second; before
  // the job runners and the API that count into it, so that it outlives them and writes the last
  // counts when corrald stops.
  corral::usage::UsageLedger usage(*store, {});
  // Anomaly alerts per script version, and the operator's webhook for them (docs/observability.md).
  corral::alerts::AnomalyDetector anomalies;
  std::unique_ptr<corral::alerts::AlertWebhook> alert_webhook;
  if (!settings.alert_webhook.empty()) {
    try {
      auto secret = corral::alerts::open_or_create_webhook_secret(settings.data_dir);
      if (secret.created) {
        log_event(spdlog::level::warn, "created the alert webhook secret",
                  {{"file", secret.file},
                   {"hint",
                    "give this key to the receiver of --alert-webhook: it checks "
                    "Corral-Signature with it"}});
      }
      alert_webhook =
          std::make_unique<corral::alerts::AlertWebhook>(corral::alerts::AlertWebhook::Options{
              .url = settings.alert_webhook, .secret = secret.secret});
    } catch (const std::exception& failure) {
      log_event(spdlog::level::err, "refusing to start", {{"error", failure.what()}});
      std::fprintf(stderr, "corrald: %s\n", failure.what());
      return 2;
    }
  }
  // The invocation pipeline (src/invoke/invoker.h): the API's runs and the jobs' go through it.
  auto quota_events = corral::api::quota_refusal_events();
  corral::invoke::Invoker invoker(
      {.store = *store,
       .audit = audit,
       .registry = registry,
       .metrics = metrics,
       .limits = settings.limits,
       .policy = policy.get(),
       .broker = &broker,
       .admission = &admission,
       .breakers = &breakers,
       .cache = settings.result_cache_bytes > 0 ? &result_cache : nullptr,
       .runs = &run_recorder,
       .usage = &usage,
       .anomalies = &anomalies,
       .alert_webhook = alert_webhook.get(),
       .quota_events = quota_events,
       .document = corral::api::run_document});
  // Jobs: runners and webhook senders (docs/operations.md, "Jobs and webhooks"). A job runs
  // through the invoker as POST …/invoke does, without an HTTP request.
  corral::jobs::JobService jobs(
      *store, *sealer, policy.get(), metrics,
      [&invoker, &executor, &store](const std::string& tenant, const std::string& script,
                                    int64_t version, const nlohmann::json& input,
                                    const std::string& invocation_id) {
        return corral::api::run_job(invoker, executor, *store, tenant, script, version, input,
                                    invocation_id);
      },
      {.threads = settings.job_threads,
       .retention = std::chrono::seconds(settings.job_retention_seconds),
       .node = settings.node_name,
       .lease = std::chrono::seconds(settings.job_lease_seconds)});
  corral::api::Api api({.store = *store,
                        .audit = audit,
                        .registry = registry,
                        .executor = executor,
                        .metrics = metrics,
                        .limits = settings.limits,
                        .openapi_yaml = std::string(corral::api::openapi_document()),
                        .policy = policy.get(),
                        .broker = &broker,
                        .secrets = &secrets,
                        .admission = &admission,
                        .publishes = &publish_rate,
                        .tokens = settings.token_cache_ms > 0 ? &tokens : nullptr,
                        .breakers = &breakers,
                        .cache = settings.result_cache_bytes > 0 ? &result_cache : nullptr,
                        .runs = &run_recorder,
                        .jobs = &jobs,
                        .usage = &usage,
                        .anomalies = &anomalies,
                        .alert_webhook = alert_webhook.get(),
                        .quota_events = quota_events,
                        .invoker = &invoker});
  corral::api::ServerOptions options{
      .host = host,
      .port = port,
      .io_threads = settings.io_threads,
      .invocation_threads = settings.invocation_threads,
      // By default no more lanes than invocation threads: each lane has at least one, and more
      // lanes would run more invocations at once than --invocation-threads says.
      .lanes = settings.lanes > 0 ? settings.lanes
                                  : std::min(static_cast<unsigned>(corral::allowed_cpus().size()),
                                             settings.invocation_threads),
      .tenant_queue_depth = settings.tenant_queue_depth,
      .max_queued = settings.max_queued,
      .max_body_bytes = settings.max_body_bytes,
      .idle_timeout_ms = 30'000,
      .refusal_hold_ms = settings.refusal_hold_ms,
      .max_connections_per_client = settings.max_connections_per_client,
      .max_connections = *max_connections,
      .denials_per_client_per_minute = settings.denials_per_client_per_minute,
      .layers = layers};
  std::unique_ptr<corral::api::Server> server;
  try {
    server = std::make_unique<corral::api::Server>(options, api, metrics);
  } catch (const std::exception& failure) {
    log_event(spdlog::level::err, failure.what());
    return 1;
  }

  std::thread([&server, &settings, &policy, handled_signals] {
    for (;;) {
      int received = 0;
      if (sigwait(&handled_signals, &received) != 0) continue;
      if (received == SIGHUP) {
        reload_on_hangup(settings, *policy);
        continue;
      }
      log_event(spdlog::level::info, "stopping: finishing requests in progress",
                {{"signal", sigabbrev_np(received) ? sigabbrev_np(received) : "?"}});
      server->stop();
      return;
    }
  }).detach();

  // After the store is open and before clients are told where to connect: jobs left running by a
  // corrald that died are queued again first.
  try {
    jobs.start();
  } catch (const std::exception& failure) {
    log_event(spdlog::level::err, "cannot recover the jobs of an earlier run",
              {{"error", failure.what()}, {"hint", "check the data directory and its disk"}});
    return 1;
  }
  std::string address = server->local_address();
  log_event(spdlog::level::info, "listening",
            {{"address", address},
             {"node", jobs.node()},
             {"data_dir", settings.data_dir},
             {"worker", settings.worker},
             {"max_connections", *max_connections}});
  if (!settings.ready_file.empty()) {
    // Written whole under another name, then renamed, so a reader never sees half an address.
    std::string partial = settings.ready_file + ".partial";
    std::ofstream(partial) << address << "\n";
    fs::rename(partial, settings.ready_file, error);
  }
  server->run();
  // Runs in progress finish and their results are written; queued jobs wait for the next start.
  jobs.stop();
  log_event(spdlog::level::info, "stopped");
  return 0;
}

// corrald's log is JSON lines (--help, docs/operations.md). Messages made as JSON pass as they
// are; one in plain words (a library's, or a component that logs text) is wrapped with its level
// and time, so that no reader of the log meets a line it cannot parse.
class JsonLines final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& message, spdlog::memory_buf_t& out) override {
    std::string_view text(message.payload.data(), message.payload.size());
    if (!text.starts_with('{')) {
      auto ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(message.time.time_since_epoch())
              .count();
      wrapped_ = nlohmann::json({{"level", spdlog::level::to_string_view(message.level).data()},
                                 {"msg", text},
                                 {"time", corral::store::iso8601(ms)}})
                     .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      text = wrapped_;
    }
    out.append(text.data(), text.data() + text.size());
    out.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonLines>();
  }

 private:
  std::string wrapped_;
};

}  // namespace

int main(int argc, char** argv) {
  corral::allowed_cpus();  // read once, before any lane pins a thread
  auto logger = spdlog::stdout_logger_mt("corrald");
  logger->set_formatter(std::make_unique<JsonLines>());
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);

  Settings settings;
  CLI::App app{
      "corrald: runs tenants' Lua scripts in sandboxed worker processes behind an HTTP API.\n"
      "Routes: see GET /v1/openapi.yaml (tenants, tokens, scripts, versions, aliases, invoke,\n"
      "audit, POST /v1/run, GET /healthz, GET /metrics). Logs are JSON lines on stdout\n"
      "(or --log-file).\n"
      "On first start with an empty store it writes an admin token to <data-dir>/admin.token\n"
      "(mode 0600), unless CORRAL_ADMIN_TOKEN supplies one.\n"
      "SIGTERM or SIGINT stops it gracefully: requests in progress finish, then it exits 0.\n"
      "SIGHUP reopens --log-file and reloads --policy (a file that is not valid is logged and\n"
      "the policy in force kept). docs/operations.md, \"Signals\"."};
  app.set_config("--config", "",
                 "read options from this TOML file (keys are the long option names)");
  app.add_option("--listen", settings.listen, "HOST:PORT to serve HTTP on; port 0 picks a free one")
      ->capture_default_str();
  app.add_option("--data-dir", settings.data_dir,
                 "directory for corral's state (created if missing)")
      ->capture_default_str();
  app.add_option("--store", settings.store,
                 "where the store is: sqlite:PATH (default: sqlite:<data-dir>/corral.db) or a "
                 "postgresql:// URI, which several corrald nodes may share (docs/operations.md, "
                 "\"Running several nodes\")");
  app.add_option("--worker", settings.worker, "the corral-worker binary")->capture_default_str();
  app.add_option("--ready-file", settings.ready_file,
                 "once listening, write the bound HOST:PORT to this file (for scripts and tests)");
  app.add_option("--io-threads", settings.io_threads, "threads serving HTTP")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--invocation-threads", settings.invocation_threads,
                 "invocations run at once (each waits on a worker process)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--lanes", settings.lanes,
                 "CPU lanes: each pinned to one CPU with its own listening socket, share of the "
                 "I/O and invocation threads, and fair queue, so that a request stays on one CPU "
                 "(docs/operations.md, \"CPU lanes\"); 0: one per CPU corrald may use, at most "
                 "--invocation-threads; 1: nothing pinned")
      ->capture_default_str()
      ->check(CLI::Range(0, 256));
  app.add_option("--tenant-queue-depth", settings.tenant_queue_depth,
                 "requests one tenant may have waiting for an invocation thread; more get 503 "
                 "queue-full with Retry-After (docs/operations.md)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1'000'000}));
  app.add_option("--max-queued", settings.max_queued,
                 "requests waiting for an invocation thread in all, across tenants; more get 503 "
                 "overloaded with Retry-After")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{10'000'000}));
  app.add_option(
         "--refusal-hold-ms", settings.refusal_hold_ms,
         "after a 429 or 503 with Retry-After, the same token sending the same request again, "
         "on any connection, waits until min(Retry-After, this) has passed, so a client "
         "flooding past its quota cannot take the machine from other tenants; 0: no wait")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{3'600'000}));
  app.add_option("--denials-per-client-per-minute", settings.denials_per_client_per_minute,
                 "401s, probes of other tenants and role refusals answered at once to one client "
                 "in a minute; past it, each waits (at most --refusal-hold-ms) until the client's "
                 "budget allows, so a flood of them is paced")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{100'000'000}));
  app.add_option("--max-connections-per-client", settings.max_connections_per_client,
                 "connections one client (an IPv4 address, or an IPv6 /64) may have open at "
                 "once; more are answered with 429 too-many-connections and closed. Clients "
                 "behind one proxy or NAT share its address; 0: no limit")
      ->capture_default_str()
      ->check(CLI::Range(size_t{0}, size_t{1'000'000}));
  app.add_option("--max-connections", settings.max_connections,
                 "connections open at once in all; at that many corrald stops accepting until "
                 "one closes, and new connections wait in the listen backlog. Default: every "
                 "descriptor not kept for the workers and the store (corrald raises its soft "
                 "descriptor limit to the hard one); more than that refuses to start; 0: no cap")
      ->check(CLI::Range(size_t{0}, size_t{10'000'000}));
  app.add_option("--token-cache-ms", settings.token_cache_ms,
                 "how long a token that authenticated is trusted without asking the store; a "
                 "token revoked through another corrald sharing the store still works here for "
                 "up to this long; 0 asks the store on every request (docs/operations.md)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{3'600'000}));
  app.add_option("--result-cache-bytes", settings.result_cache_bytes,
                 "memory for cached results of deterministic scripts, in bytes; 0 turns the "
                 "cache off")
      ->capture_default_str();
  app.add_option("--job-threads", settings.job_threads,
                 "jobs run at once (each waits on a worker process, as an invocation does); 0 "
                 "accepts and stores jobs but runs none, e.g. while investigating a failing script")
      ->capture_default_str()
      ->check(CLI::Range(0, 256));
  app.add_option("--alert-webhook", settings.alert_webhook,
                 "POST every anomaly alert raised or cleared to this http(s) URL, signed with the "
                 "key in <data-dir>/alert-webhook.secret (made on first start) as job webhooks are "
                 "(docs/observability.md, \"Anomaly alerts\")")
      ->check([](const std::string& url) {
        return corral::alerts::AlertWebhook::url_problem(url).value_or("");
      });
  app.add_option("--job-retention-seconds", settings.job_retention_seconds,
                 "how long a finished job (its result, its webhook delivery once settled, and its "
                 "Idempotency-Key) is kept after it ended; 0 keeps every job for ever")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{10} * 365 * 24 * 3600));
  app.add_option("--job-lease-seconds", settings.job_lease_seconds,
                 "how long a running job is leased to this node; renewed every third of it while "
                 "the run goes on, and once it lapses (the node died or stalled) another node on "
                 "the same store may take the job, counting the attempt as crashed")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{3}, int64_t{3600}));
  app.add_option("--node-name", settings.node_name,
                 "this corrald's name in the leases of the jobs it runs, in the log and in a "
                 "running job's \"node\": 1 to 100 letters, digits, '.', '_' or '-', unique "
                 "among the nodes of a store (default: <hostname>-<pid>-<random>)")
      ->check([](const std::string& name) {
        return corral::jobs::valid_node_name(name)
                   ? std::string()
                   : "\"" + name.substr(0, 100) +
                         "\" is not a node name: use 1 to 100 letters, digits, '.', '_' or '-' "
                         "(e.g. eu-west-1a)";
      });
  app.add_option("--worker-memory-budget", settings.worker_memory_budget,
                 "the memory all workers may cost together, kernel and user, as a share of the "
                 "machine's (\"25%\") or an amount (\"4G\", \"512M\"): idle workers of every "
                 "tenant are kept while it allows, the longest idle go first when it is spent")
      ->capture_default_str();
  app.add_option("--metrics-top", settings.metrics_top,
                 "the busiest N tenants, and N scripts, get series of their own in /metrics; the "
                 "rest are counted under tenant=\"other\" (docs/observability.md)")
      ->capture_default_str();
  app.add_option("--max-idle-workers", settings.max_idle_workers,
                 "advanced: idle worker processes kept between runs, in all (default: as many as "
                 "the memory budget holds)");
  app.add_option("--max-workers", settings.max_workers_given,
                 "advanced: worker processes alive at once, idle and busy (default: derived from "
                 "the memory budget and the machine's limits, and logged at start)")
      ->check(CLI::PositiveNumber);
  app.add_option("--warm-per-tenant", settings.warm_per_tenant,
                 "idle workers kept ready for each recent tenant")
      ->capture_default_str();
  app.add_option(
         "--spare-workers", settings.spare_workers,
         "jailed workers kept ready for tenants that have none, so a new tenant's first run "
         "does not wait for a spawn")
      ->capture_default_str();
  app.add_option("--recycle-after", settings.recycle_after,
                 "invocations a worker serves before it is replaced")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--worker-start-timeout-ms", settings.worker_start_timeout_ms,
                 "how long a new worker has to jail itself and announce it is ready; past it the "
                 "worker is killed and the run that needed it is answered 503 no-worker with "
                 "Retry-After (or the run's own timeout, if shorter)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{600'000}));
  app.add_option(
         "--allow-missing-layer", settings.allowed_missing_layers,
         "run even though this machine cannot provide this jail layer (repeatable): namespaces, "
         "filesystem, network, rlimits, cgroup, process, capabilities, seccomp")
      ->group("Jail");
  app.add_option("--cgroup-root", settings.cgroup_root, "where the cgroup hierarchies are mounted")
      ->capture_default_str()
      ->group("Jail");
  app.add_option("--worker-id-range", settings.worker_id_range,
                 "START:COUNT: the host uids (and gids) workers run as, one per tenant with live "
                 "workers and one per spare; no user, group or other user's subordinate range may "
                 "use them, and COUNT must be at least --max-workers")
      ->capture_default_str()
      ->group("Jail");
  app.add_option("--worker-network", settings.worker_network,
                 "shared: every worker joins one empty network namespace owned by the host, "
                 "with its abstract unix sockets and signals scoped to itself (Landlock, Linux "
                 "6.12; where the kernel cannot, each worker gets its own); own: a network "
                 "namespace per worker, at about 180 KiB of kernel memory each (docs/jail.md)")
      ->capture_default_str()
      ->check(CLI::IsMember({"shared", "own"}))
      ->group("Jail");
  app.add_flag("--check", settings.check,
               "list every jail layer and whether this machine provides it, then exit (1 if "
               "corrald would "
               "refuse to start)")
      ->group("Jail");
  app.add_option("--max-body-bytes", settings.max_body_bytes,
                 "largest request body accepted; larger bodies get 413")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag(
      "--allow-self-approval", settings.allow_self_approval,
      "deprecated: let every tenant's reviewers approve versions published by the same token or "
      "subject, whatever the policy says; set governance.self_approval_allowed in the policy "
      "instead");
  app.add_option(
      "--policy", settings.policy_file,
      "a policy YAML file (docs/policy.md) to put in force at start-up: stored as a new "
      "version unless it equals the newest stored one; corrald refuses to start, listing "
      "every problem, if it is not valid. Without it the newest stored version applies, "
      "or the built-in safe default");
  app.add_option("--log-file", settings.log_file,
                 "append the log (JSON lines) to this file instead of standard output; SIGHUP "
                 "opens it again, for logrotate");
  add_limit_flags(app, settings);

  try {
    app.parse(argc, argv);
    if (auto unknown = unknown_config_key(app)) {
      std::fprintf(stderr, "corrald: %s\n", unknown->c_str());
      return 2;
    }
    check_limits(settings.limits);
    check_queue_bounds(settings);
    split_listen(settings.listen);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }
  try {
    size_pool(settings);
  } catch (const std::invalid_argument& bad) {
    std::fprintf(stderr, "corrald: %s\n", bad.what());
    return 2;
  }
  if (settings.check) return check_layers(settings);
  return serve(settings);
}

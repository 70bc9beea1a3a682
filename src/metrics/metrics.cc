#include "metrics/metrics.h"

#include <cmath>
#include <sstream>

namespace corral::metrics {

namespace {

constexpr std::array kAllOutcomes = {
    Outcome::ok,       Outcome::script_error, Outcome::limit_exceeded, Outcome::denied,
    Outcome::rejected, Outcome::invalid,      Outcome::crashed};
static_assert(kAllOutcomes.size() == static_cast<size_t>(Outcome::crashed) + 1);

std::string format_bound(double seconds) {
  std::ostringstream text;
  text << seconds;
  return text.str();
}

}  // namespace

void Registry::record_invocation(Outcome outcome, double seconds) {
  invocations_[static_cast<size_t>(outcome)].fetch_add(1, std::memory_order_relaxed);
  for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
    if (seconds <= kLatencyBuckets[i]) {
      latency_buckets_[i].fetch_add(1, std::memory_order_relaxed);
      break;
    }
  }
  latency_count_.fetch_add(1, std::memory_order_relaxed);
  latency_sum_micros_.fetch_add(static_cast<uint64_t>(std::llround(std::max(seconds, 0.0) * 1e6)),
                                std::memory_order_relaxed);
}

void Registry::record_http_request(std::string_view route, int status) {
  std::lock_guard lock(http_mutex_);
  ++http_requests_[{std::string(route), status}];
}

void Registry::attribute(const Attribution& who, Outcome outcome, std::optional<double> seconds,
                         const Stats* stats) {
  if (who.tenant.empty()) return;
  tenants_->figures_for(who.tenant).record(outcome, seconds, stats);
  if (who.script.empty()) return;
  // Kept per thread, so that building the key allocates only when a longer one comes.
  thread_local std::string key;
  key.assign(who.tenant);
  key += '\0';
  key += who.script;
  scripts_->figures_for(key).record(outcome, seconds, stats);
}

void Registry::limit_attributed_series(size_t max_labelled, uint64_t busy_after) {
  tenants_ = std::make_unique<AttributedSeries>(max_labelled, busy_after);
  scripts_ = std::make_unique<AttributedSeries>(max_labelled, busy_after);
}

namespace {

// A label value as the exposition format escapes it. Tenant and script names are plain already
// (the registry allows letters, digits, '-', '_' and '.'), so this is a safeguard.
void append_label_value(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

// The labels of one attributed series, without braces: tenant="…" or tenant="…",script="…".
std::string attributed_labels(std::string_view key, bool per_script) {
  std::string labels = "tenant=\"";
  if (key.empty()) {
    labels += per_script ? "other\",script=\"other\"" : "other\"";
    return labels;
  }
  size_t split = per_script ? key.find('\0') : std::string_view::npos;
  append_label_value(labels, key.substr(0, split));
  labels += '"';
  if (split != std::string_view::npos) {
    labels += ",script=\"";
    append_label_value(labels, key.substr(split + 1));
    labels += '"';
  }
  return labels;
}

}  // namespace

// One family at a time, as the exposition format requires: the series of every key for each.
void Registry::render_attributed(std::ostringstream& out) const {
  for (bool per_script : {false, true}) {
    const AttributedSeries& series = per_script ? *scripts_ : *tenants_;
    std::string family = per_script ? "corral_script_" : "corral_tenant_";
    std::string whose = per_script ? "script (the busiest --metrics-top scripts by name, the rest "
                                     "under tenant=\"other\",script=\"other\")"
                                   : "tenant (the busiest --metrics-top tenants by name, the rest "
                                     "under tenant=\"other\")";
    std::ostringstream invocations, latency, fuel, cpu, memory_sum, memory_max;
    series.for_each([&](std::string_view key, const InvocationFigures& figures) {
      std::string labels = attributed_labels(key, per_script);
      for (Outcome outcome : kAllOutcomes) {
        invocations << family << "invocations_total{" << labels << ",outcome=\""
                    << to_string(outcome) << "\"} "
                    << figures.invocations[static_cast<size_t>(outcome)].load(
                           std::memory_order_relaxed)
                    << "\n";
      }
      uint64_t cumulative = 0;
      for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
        cumulative += figures.latency_buckets[i].load(std::memory_order_relaxed);
        latency << family << "invocation_duration_seconds_bucket{" << labels << ",le=\""
                << format_bound(kLatencyBuckets[i]) << "\"} " << cumulative << "\n";
      }
      uint64_t count = std::max(figures.latency_count.load(std::memory_order_relaxed), cumulative);
      latency << family << "invocation_duration_seconds_bucket{" << labels << ",le=\"+Inf\"} "
              << count << "\n"
              << family << "invocation_duration_seconds_sum{" << labels << "} "
              << static_cast<double>(figures.latency_sum_micros.load(std::memory_order_relaxed)) /
                     1e6
              << "\n"
              << family << "invocation_duration_seconds_count{" << labels << "} " << count << "\n";
      fuel << family << "fuel_total{" << labels << "} "
           << figures.fuel.load(std::memory_order_relaxed) << "\n";
      cpu << family << "cpu_seconds_total{" << labels << "} "
          << static_cast<double>(figures.cpu_micros.load(std::memory_order_relaxed)) / 1e6 << "\n";
      memory_sum << family << "memory_peak_bytes_total{" << labels << "} "
                 << figures.memory_peak_bytes_sum.load(std::memory_order_relaxed) << "\n";
      memory_max << family << "memory_peak_bytes_max{" << labels << "} "
                 << figures.memory_peak_bytes_max.load(std::memory_order_relaxed) << "\n";
    });
    out << "# HELP " << family << "invocations_total Invocations finished, by outcome, per "
        << whose << ".\n# TYPE " << family << "invocations_total counter\n"
        << invocations.str();
    out << "# HELP " << family
        << "invocation_duration_seconds Wall time of invocations, as the API saw it, per " << whose
        << ".\n# TYPE " << family << "invocation_duration_seconds histogram\n"
        << latency.str();
    out << "# HELP " << family << "fuel_total Fuel (Lua instructions) used by invocations, per "
        << whose << ".\n# TYPE " << family << "fuel_total counter\n"
        << fuel.str();
    out << "# HELP " << family << "cpu_seconds_total CPU time of invocations in their workers, per "
        << whose << ".\n# TYPE " << family << "cpu_seconds_total counter\n"
        << cpu.str();
    out << "# HELP " << family
        << "memory_peak_bytes_total Each invocation's peak Lua memory, added up (divide by the "
           "invocations for the mean peak), per "
        << whose << ".\n# TYPE " << family << "memory_peak_bytes_total counter\n"
        << memory_sum.str();
    out << "# HELP " << family
        << "memory_peak_bytes_max The highest peak Lua memory of one invocation since corrald "
           "started, per "
        << whose << ".\n# TYPE " << family << "memory_peak_bytes_max gauge\n"
        << memory_max.str();
  }
}

uint64_t Registry::invocations(Outcome outcome) const {
  return invocations_[static_cast<size_t>(outcome)].load(std::memory_order_relaxed);
}

void Registry::record_capability_call(std::string_view op, std::string_view result,
                                      double seconds) {
  std::lock_guard lock(calls_mutex_);
  auto& totals = capability_calls_[{std::string(op), std::string(result)}];
  ++totals.count;
  totals.seconds += seconds;
}

void Registry::record_quota_rejection(std::string_view quota) {
  for (size_t i = 0; i < kQuotas.size(); ++i) {
    if (kQuotas[i] != quota) continue;
    quota_rejections_[i].fetch_add(1, std::memory_order_relaxed);
    invocations_[static_cast<size_t>(Outcome::rejected)].fetch_add(1, std::memory_order_relaxed);
  }
}

void Registry::record_quota_warning(std::string_view quota) {
  for (size_t i = 0; i < kQuotas.size(); ++i) {
    if (kQuotas[i] == quota) quota_warnings_[i].fetch_add(1, std::memory_order_relaxed);
  }
}

void Registry::record_alert(std::string_view rule, bool raised) {
  for (size_t i = 0; i < kAlertRules.size(); ++i) {
    if (kAlertRules[i] == rule)
      (raised ? alerts_raised_ : alerts_cleared_)[i].fetch_add(1, std::memory_order_relaxed);
  }
}

void Registry::record_breaker_transition(std::string_view to) {
  for (size_t i = 0; i < kBreakerStates.size(); ++i) {
    if (kBreakerStates[i] == to) breaker_transitions_[i].fetch_add(1, std::memory_order_relaxed);
  }
}

void Registry::record_breaker_rejection() {
  breaker_rejections_.fetch_add(1, std::memory_order_relaxed);
  invocations_[static_cast<size_t>(Outcome::rejected)].fetch_add(1, std::memory_order_relaxed);
}

void Registry::record_queue_wait(double wait_seconds) {
  for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
    if (wait_seconds <= kLatencyBuckets[i]) {
      queue_wait_buckets_[i].fetch_add(1, std::memory_order_relaxed);
      break;
    }
  }
  queue_wait_count_.fetch_add(1, std::memory_order_relaxed);
  queue_wait_sum_micros_.fetch_add(
      static_cast<uint64_t>(std::llround(std::max(wait_seconds, 0.0) * 1e6)),
      std::memory_order_relaxed);
}

void Registry::record_queue_rejection(std::string_view reason, bool invocation) {
  for (size_t i = 0; i < kQueueRejections.size(); ++i) {
    if (kQueueRejections[i] != reason) continue;
    queue_rejections_[i].fetch_add(1, std::memory_order_relaxed);
    if (invocation) {
      invocations_[static_cast<size_t>(Outcome::rejected)].fetch_add(1, std::memory_order_relaxed);
    }
  }
}

void Registry::record_cache_lookup(std::string_view result) {
  if (result == "hit") cache_hits_.fetch_add(1, std::memory_order_relaxed);
  if (result == "miss") cache_misses_.fetch_add(1, std::memory_order_relaxed);
}

void Registry::record_canary_route(bool canary) {
  canary_routes_[canary ? 1 : 0].fetch_add(1, std::memory_order_relaxed);
}

// Result cache, canaries and stored runs, in render()'s format.
static void render_cache_and_runs(std::ostringstream& out, uint64_t hits, uint64_t misses,
                                  int64_t entries, int64_t bytes, uint64_t primary, uint64_t canary,
                                  int64_t dropped) {
  out << "# HELP corral_result_cache_lookups_total Invocations of cacheable versions, by whether "
         "the result cache answered them.\n"
      << "# TYPE corral_result_cache_lookups_total counter\n"
      << "corral_result_cache_lookups_total{result=\"hit\"} " << hits << "\n"
      << "corral_result_cache_lookups_total{result=\"miss\"} " << misses << "\n"
      << "# HELP corral_result_cache_entries Results held by the result cache.\n"
      << "# TYPE corral_result_cache_entries gauge\n"
      << "corral_result_cache_entries " << entries << "\n"
      << "# HELP corral_result_cache_bytes Bytes charged to the result cache's entries.\n"
      << "# TYPE corral_result_cache_bytes gauge\n"
      << "corral_result_cache_bytes " << bytes << "\n"
      << "# HELP corral_canary_invocations_total Invocations through aliases with a canary split, "
         "by the side they went to.\n"
      << "# TYPE corral_canary_invocations_total counter\n"
      << "corral_canary_invocations_total{route=\"primary\"} " << primary << "\n"
      << "corral_canary_invocations_total{route=\"canary\"} " << canary << "\n"
      << "# HELP corral_stored_runs_dropped_total Runs not stored because the store fell behind "
         "or failed.\n"
      << "# TYPE corral_stored_runs_dropped_total counter\n"
      << "corral_stored_runs_dropped_total " << dropped << "\n";
}

// ---- jobs

namespace {

template <typename Counters, typename Names>
void bump(Counters& counters, const Names& names, std::string_view name) {
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) counters[i].fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace

void Registry::set_jobs(std::string_view state, int64_t count) {
  for (size_t i = 0; i < kJobStates.size(); ++i) {
    if (kJobStates[i] == state) jobs_[i].store(count, std::memory_order_relaxed);
  }
}

void Registry::record_job_run(std::string_view result) { bump(job_runs_, kJobRunResults, result); }

void Registry::record_webhook_delivery(std::string_view result) {
  bump(webhook_deliveries_, kWebhookResults, result);
}

void Registry::render_jobs(std::ostringstream& out) const {
  out << "# HELP corral_jobs Jobs by state now (refreshed about once a second).\n"
      << "# TYPE corral_jobs gauge\n";
  for (size_t i = 0; i < kJobStates.size(); ++i) {
    out << "corral_jobs{state=\"" << kJobStates[i] << "\"} "
        << jobs_[i].load(std::memory_order_relaxed) << "\n";
  }
  out << "# HELP corral_job_runs_total Runs of jobs, by what became of the job: succeeded, "
         "failed, retried (crashed, queued again), deferred (circuit open), cancelled.\n"
      << "# TYPE corral_job_runs_total counter\n";
  for (size_t i = 0; i < kJobRunResults.size(); ++i) {
    out << "corral_job_runs_total{result=\"" << kJobRunResults[i] << "\"} "
        << job_runs_[i].load(std::memory_order_relaxed) << "\n";
  }
  out << "# HELP corral_job_retries_total Job attempts that crashed and were queued again.\n"
      << "# TYPE corral_job_retries_total counter\n"
      << "corral_job_retries_total " << job_runs_[2].load(std::memory_order_relaxed) << "\n";
  out << "# HELP corral_webhook_deliveries_total Webhook tries, by result: delivered, retry "
         "(to be tried again), dead (given up).\n"
      << "# TYPE corral_webhook_deliveries_total counter\n";
  for (size_t i = 0; i < kWebhookResults.size(); ++i) {
    out << "corral_webhook_deliveries_total{result=\"" << kWebhookResults[i] << "\"} "
        << webhook_deliveries_[i].load(std::memory_order_relaxed) << "\n";
  }
  out << "# HELP corral_jobs_pruned_total Final jobs forgotten past their retention, with their "
         "webhook deliveries (--job-retention-seconds).\n"
      << "# TYPE corral_jobs_pruned_total counter\n"
      << "corral_jobs_pruned_total " << jobs_pruned_.load(std::memory_order_relaxed) << "\n";
  out << "# HELP corral_webhook_deliveries_dead Webhook deliveries dead now (kept, listable).\n"
      << "# TYPE corral_webhook_deliveries_dead gauge\n"
      << "corral_webhook_deliveries_dead " << dead_deliveries_.load(std::memory_order_relaxed)
      << "\n";
}

std::string Registry::render() const {
  std::ostringstream out;
  out << "# HELP corral_invocations_total Invocations finished, by outcome.\n"
      << "# TYPE corral_invocations_total counter\n";
  for (Outcome outcome : kAllOutcomes) {
    out << "corral_invocations_total{outcome=\"" << to_string(outcome) << "\"} "
        << invocations(outcome) << "\n";
  }

  out << "# HELP corral_invocation_duration_seconds Wall time of invocations, as the API saw it.\n"
      << "# TYPE corral_invocation_duration_seconds histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
    cumulative += latency_buckets_[i].load(std::memory_order_relaxed);
    out << "corral_invocation_duration_seconds_bucket{le=\"" << format_bound(kLatencyBuckets[i])
        << "\"} " << cumulative << "\n";
  }
  // Read the count last so that +Inf is never below a finite bucket in one snapshot.
  uint64_t count = std::max(latency_count_.load(std::memory_order_relaxed), cumulative);
  out << "corral_invocation_duration_seconds_bucket{le=\"+Inf\"} " << count << "\n"
      << "corral_invocation_duration_seconds_sum "
      << static_cast<double>(latency_sum_micros_.load(std::memory_order_relaxed)) / 1e6 << "\n"
      << "corral_invocation_duration_seconds_count " << count << "\n";

  out << "# HELP corral_invocations_in_flight Invocations running or waiting for a worker.\n"
      << "# TYPE corral_invocations_in_flight gauge\n"
      << "corral_invocations_in_flight " << in_flight_.load(std::memory_order_relaxed) << "\n";

  out << "# HELP corral_quota_rejections_total Invocations refused by admission (429), by quota.\n"
      << "# TYPE corral_quota_rejections_total counter\n";
  for (size_t i = 0; i < kQuotas.size(); ++i) {
    out << "corral_quota_rejections_total{quota=\"" << kQuotas[i] << "\"} "
        << quota_rejections_[i].load(std::memory_order_relaxed) << "\n";
  }
  out << "# HELP corral_quota_warnings_total Invocations admitted at 80 % or more of a quota, by "
         "quota.\n"
      << "# TYPE corral_quota_warnings_total counter\n";
  for (size_t i = 0; i < kQuotas.size(); ++i) {
    out << "corral_quota_warnings_total{quota=\"" << kQuotas[i] << "\"} "
        << quota_warnings_[i].load(std::memory_order_relaxed) << "\n";
  }

  out << "# HELP corral_breaker_transitions_total Circuit breaker state changes, by the state "
         "entered.\n"
      << "# TYPE corral_breaker_transitions_total counter\n";
  for (size_t i = 0; i < kBreakerStates.size(); ++i) {
    out << "corral_breaker_transitions_total{to=\"" << kBreakerStates[i] << "\"} "
        << breaker_transitions_[i].load(std::memory_order_relaxed) << "\n";
  }
  out << "# HELP corral_breaker_rejections_total Invocations refused (503) because their "
         "version's circuit breaker is open.\n"
      << "# TYPE corral_breaker_rejections_total counter\n"
      << "corral_breaker_rejections_total " << breaker_rejections_.load(std::memory_order_relaxed)
      << "\n";
  out << "# HELP corral_breakers_open Script versions quarantined now (breaker open or "
         "half-open).\n"
      << "# TYPE corral_breakers_open gauge\n"
      << "corral_breakers_open " << quarantined_versions_.load(std::memory_order_relaxed) << "\n";
  out << "# HELP corral_alerts_total Anomaly alerts of script versions, by rule, raised and "
         "cleared.\n"
      << "# TYPE corral_alerts_total counter\n";
  for (size_t i = 0; i < kAlertRules.size(); ++i) {
    out << "corral_alerts_total{rule=\"" << kAlertRules[i] << "\",state=\"raised\"} "
        << alerts_raised_[i].load(std::memory_order_relaxed) << "\n"
        << "corral_alerts_total{rule=\"" << kAlertRules[i] << "\",state=\"cleared\"} "
        << alerts_cleared_[i].load(std::memory_order_relaxed) << "\n";
  }
  out << "# HELP corral_alerts_active Anomaly alert rules raised now, over every script version.\n"
      << "# TYPE corral_alerts_active gauge\n"
      << "corral_alerts_active " << alerts_active_.load(std::memory_order_relaxed) << "\n";

  out << "# HELP corral_requests_queued Requests waiting in the fair queues for an invocation "
         "thread.\n"
      << "# TYPE corral_requests_queued gauge\n"
      << "corral_requests_queued " << requests_queued_.load(std::memory_order_relaxed) << "\n";
  out << "# HELP corral_queue_rejections_total Requests refused (503) because a tenant's queue or "
         "the global bound was full, or corrald was stopping, by reason.\n"
      << "# TYPE corral_queue_rejections_total counter\n";
  for (size_t i = 0; i < kQueueRejections.size(); ++i) {
    out << "corral_queue_rejections_total{reason=\"" << kQueueRejections[i] << "\"} "
        << queue_rejections_[i].load(std::memory_order_relaxed) << "\n";
  }
  out << "# HELP corral_refusal_holds_total Requests that waited out an earlier refusal with "
         "Retry-After of the same request by the same token (--refusal-hold-ms).\n"
      << "# TYPE corral_refusal_holds_total counter\n"
      << "corral_refusal_holds_total " << refusal_holds_.load(std::memory_order_relaxed) << "\n";
  out << "# HELP corral_connection_refusals_total Connections refused with 429 because their "
         "client (an IPv4 address, an IPv6 /64) had --max-connections-per-client open.\n"
      << "# TYPE corral_connection_refusals_total counter\n"
      << "corral_connection_refusals_total " << connection_refusals_.load(std::memory_order_relaxed)
      << "\n";
  out << "# HELP corral_connections_open HTTP connections open now.\n"
      << "# TYPE corral_connections_open gauge\n"
      << "corral_connections_open " << (connections_open_ ? connections_open_() : 0) << "\n";
  out << "# HELP corral_connection_cap_waits_total Times a lane stopped accepting because "
         "--max-connections were open; new connections waited in the listen backlog.\n"
      << "# TYPE corral_connection_cap_waits_total counter\n"
      << "corral_connection_cap_waits_total "
      << connection_cap_waits_.load(std::memory_order_relaxed) << "\n";
  out << "# HELP corral_accept_errors_total Connections that could not be accepted (out of "
         "descriptors or memory, or the client gone first).\n"
      << "# TYPE corral_accept_errors_total counter\n"
      << "corral_accept_errors_total " << accept_errors_.load(std::memory_order_relaxed) << "\n";
  if (size_t lanes = std::min(lanes_.load(std::memory_order_relaxed), kMaxLaneSeries); lanes > 0) {
    out << "# HELP corral_lane_connections_total Connections accepted by each CPU lane "
           "(--lanes).\n"
        << "# TYPE corral_lane_connections_total counter\n";
    for (size_t lane = 0; lane < lanes; ++lane) {
      out << "corral_lane_connections_total{lane=\"" << lane << "\"} "
          << lane_connections_[lane].load(std::memory_order_relaxed) << "\n";
    }
  }
  out << "# HELP corral_queue_wait_seconds Time requests waited in the fair queues before an "
         "invocation thread took them.\n"
      << "# TYPE corral_queue_wait_seconds histogram\n";
  uint64_t waited = 0;
  for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
    waited += queue_wait_buckets_[i].load(std::memory_order_relaxed);
    out << "corral_queue_wait_seconds_bucket{le=\"" << format_bound(kLatencyBuckets[i]) << "\"} "
        << waited << "\n";
  }
  uint64_t waits = std::max(queue_wait_count_.load(std::memory_order_relaxed), waited);
  out << "corral_queue_wait_seconds_bucket{le=\"+Inf\"} " << waits << "\n"
      << "corral_queue_wait_seconds_sum "
      << static_cast<double>(queue_wait_sum_micros_.load(std::memory_order_relaxed)) / 1e6 << "\n"
      << "corral_queue_wait_seconds_count " << waits << "\n";

  {
    std::lock_guard lock(calls_mutex_);
    out << "# HELP corral_capability_calls_total Capability calls answered by the broker, by "
           "operation and result.\n"
        << "# TYPE corral_capability_calls_total counter\n";
    for (const auto& [key, totals] : capability_calls_) {
      out << "corral_capability_calls_total{op=\"" << key.first << "\",result=\"" << key.second
          << "\"} " << totals.count << "\n";
    }
    out << "# HELP corral_capability_call_seconds_total Time the broker spent on capability "
           "calls, by operation and result.\n"
        << "# TYPE corral_capability_call_seconds_total counter\n";
    for (const auto& [key, totals] : capability_calls_) {
      out << "corral_capability_call_seconds_total{op=\"" << key.first << "\",result=\""
          << key.second << "\"} " << totals.seconds << "\n";
    }
  }

  out << "# HELP corral_http_requests_total HTTP requests answered, by route and status code.\n"
      << "# TYPE corral_http_requests_total counter\n";
  {
    std::lock_guard lock(http_mutex_);
    for (const auto& [key, value] : http_requests_) {
      out << "corral_http_requests_total{route=\"" << key.first << "\",code=\"" << key.second
          << "\"} " << value << "\n";
    }
  }
  render_cache_and_runs(out, cache_hits_.load(std::memory_order_relaxed),
                        cache_misses_.load(std::memory_order_relaxed),
                        cache_entries_.load(std::memory_order_relaxed),
                        cache_bytes_.load(std::memory_order_relaxed),
                        canary_routes_[0].load(std::memory_order_relaxed),
                        canary_routes_[1].load(std::memory_order_relaxed),
                        stored_runs_dropped_.load(std::memory_order_relaxed));
  TokenCacheFigures tokens = token_cache_ ? token_cache_() : TokenCacheFigures{};
  out << "# HELP corral_token_cache_lookups_total Token checks, by whether the token cache "
         "answered (hit) or the store was asked (miss).\n"
      << "# TYPE corral_token_cache_lookups_total counter\n"
      << "corral_token_cache_lookups_total{result=\"hit\"} " << tokens.hits << "\n"
      << "corral_token_cache_lookups_total{result=\"miss\"} " << tokens.misses << "\n"
      << "# HELP corral_token_cache_entries Tokens held by the token cache.\n"
      << "# TYPE corral_token_cache_entries gauge\n"
      << "corral_token_cache_entries " << tokens.entries << "\n";
  render_worker_pool(out, worker_pool_ ? worker_pool_() : WorkerPoolFigures{});
  render_jobs(out);
  render_attributed(out);
  render_process_metrics(out);
  render_build_info(out);
  return out.str();
}

void Registry::render_worker_pool(std::ostream& out, const WorkerPoolFigures& pool) {
  out << "# HELP corral_workers Worker processes now, by state (busy, idle for their tenant, "
         "spare for no tenant yet, starting, stopping).\n"
      << "# TYPE corral_workers gauge\n"
      << "corral_workers{state=\"busy\"} " << pool.busy << "\n"
      << "corral_workers{state=\"idle\"} " << pool.idle << "\n"
      << "corral_workers{state=\"spare\"} " << pool.spare << "\n"
      << "corral_workers{state=\"starting\"} " << pool.starting << "\n"
      << "corral_workers{state=\"stopping\"} " << pool.stopping << "\n"
      << "# HELP corral_workers_max The most worker processes corrald runs at once "
         "(--max-workers).\n"
      << "# TYPE corral_workers_max gauge\n"
      << "corral_workers_max " << pool.max_workers << "\n"
      << "# HELP corral_worker_memory_budget_bytes The memory all workers may cost together, "
         "kernel and user (--worker-memory-budget).\n"
      << "# TYPE corral_worker_memory_budget_bytes gauge\n"
      << "corral_worker_memory_budget_bytes " << pool.memory_budget_bytes << "\n"
      << "# HELP corral_worker_memory_bytes What the live workers cost, as the budget counts "
         "them: each worker's kernel share and its own anonymous memory.\n"
      << "# TYPE corral_worker_memory_bytes gauge\n"
      << "corral_worker_memory_bytes " << pool.memory_bytes << "\n"
      << "# HELP corral_workers_started_total Worker processes started.\n"
      << "# TYPE corral_workers_started_total counter\n"
      << "corral_workers_started_total " << pool.started << "\n"
      << "# HELP corral_worker_start_failures_total Worker processes that could not be started "
         "or died before they were ready; runs that needed them were rejected.\n"
      << "# TYPE corral_worker_start_failures_total counter\n"
      << "corral_worker_start_failures_total " << pool.start_failures << "\n"
      << "# HELP corral_workers_retired_total Workers stopped after a run: worn out "
         "(--recycle-after), after an outcome other than ok or script_error, or found dead.\n"
      << "# TYPE corral_workers_retired_total counter\n"
      << "corral_workers_retired_total " << pool.retired << "\n"
      << "# HELP corral_workers_evicted_total Idle workers stopped to make room for another "
         "tenant's, or beyond --max-idle-workers.\n"
      << "# TYPE corral_workers_evicted_total counter\n"
      << "corral_workers_evicted_total " << pool.evicted << "\n";
}

}  // namespace corral::metrics

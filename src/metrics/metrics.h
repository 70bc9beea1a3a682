// corral's service metrics, rendered in the Prometheus text exposition format (0.0.4) for
// GET /metrics. Recording is lock-free on the invocation path; render() takes a snapshot.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include "invocation/invocation.h"
#include "metrics/attributed_series.h"

namespace corral::metrics {

class Registry {
 public:
  // Upper bounds, in seconds, of the invocation latency histogram's buckets.
  static constexpr std::array<double, 14> kLatencyBuckets = metrics::kLatencyBuckets;

  void record_invocation(Outcome outcome, double seconds);

  // ---- per tenant and per script (docs/observability.md). Whom an invocation is charged to:
  // the tenant's name (an admin's playground runs: "playground") and the script's (empty for a
  // playground run, which is then in the tenant's series only).
  struct Attribution {
    std::string_view tenant;
    std::string_view script;
  };
  // Counts an invocation in its tenant's and its script's series, beside (not instead of) the
  // global ones: seconds is nullopt for one refused before it ran, stats nullptr when nothing ran
  // (a refusal, a cached result). Cheap enough for every invocation: two short hash lookups under
  // a mutex each, then atomics; no allocation once the key is known.
  void attribute(const Attribution& who, Outcome outcome, std::optional<double> seconds,
                 const Stats* stats);
  // The busiest `max_labelled` tenants, and as many scripts, get series of their own; the rest
  // are counted under tenant="other" (attributed_series.h). Before serving only: it forgets what
  // was counted (corrald --metrics-top).
  void limit_attributed_series(size_t max_labelled,
                               uint64_t busy_after = AttributedSeries::kDefaultBusyAfter);
  void record_http_request(std::string_view route, int status);
  // A capability call answered by the broker: op is "kv.get", "http.fetch", … (the broker only
  // passes known ops, so the label set stays bounded); result is ok, denied, error or limit.
  void record_capability_call(std::string_view op, std::string_view result, double seconds);
  // Admission by quota (src/sched): quota is "rate", "concurrency" or "cpu_ms_per_minute"; other
  // names are ignored, so the label set stays fixed. A rejection is also an invocation with outcome
  // rejected in corral_invocations_total (it never ran, so it is not in the latency histogram).
  void record_quota_rejection(std::string_view quota);
  void record_quota_warning(std::string_view quota);
  // Circuit breakers (src/sched/circuit_breaker.h): a transition to "open", "half_open" or
  // "closed" (other names are ignored), and the breakers open or half-open now. A refusal by an
  // open breaker is an invocation with outcome rejected, as a quota's is.
  void record_breaker_transition(std::string_view to);
  void record_breaker_rejection();
  void set_quarantined_versions(int64_t count) {
    quarantined_versions_.store(count, std::memory_order_relaxed);
  }
  // Anomaly alerts (src/alerts/anomaly_detector.h): a rule ("error_rate", "latency_p99", "fuel",
  // "memory"; other names are ignored) raised or cleared, and the rules raised now.
  void record_alert(std::string_view rule, bool raised);
  void set_alerts_active(int64_t count) { alerts_active_.store(count, std::memory_order_relaxed); }
  // Fair queues in front of the invocation threads (src/sched/fair_queue.h, api/server.cc),
  // never labelled by tenant, whose names are unbounded: the requests queued now (the server sets
  // it from the queue just before each render), how long a request waited before a thread took
  // it, and refusals with 503 by reason: "tenant_queue_full", "overloaded" or "stopping" (other
  // names are ignored). A refused invocation (invoke or /v1/run) is also outcome rejected in
  // corral_invocations_total.
  void set_requests_queued(int64_t count) {
    requests_queued_.store(count, std::memory_order_relaxed);
  }
  void record_queue_wait(double seconds);
  void record_queue_rejection(std::string_view reason, bool invocation);
  // A request waited out an earlier refusal with Retry-After of the same request by the same
  // token, on whichever connection it came (server.h, refusal_hold_ms).
  void record_refusal_hold() { refusal_holds_.fetch_add(1, std::memory_order_relaxed); }
  // A connection was refused because its client address had max_connections_per_client open
  // (server.h).
  void record_connection_refusal() { connection_refusals_.fetch_add(1, std::memory_order_relaxed); }
  // Connections open now, read from the server's cap when /metrics is rendered (set before
  // serving, cleared after; without it the series reads 0); the times a lane had to wait because
  // max_connections were open (server.h); accepts that failed (out of descriptors, or the client
  // gone).
  void watch_connections_open(std::function<size_t()> read) { connections_open_ = std::move(read); }
  void record_connection_cap_wait() {
    connection_cap_waits_.fetch_add(1, std::memory_order_relaxed);
  }
  void record_accept_error() { accept_errors_.fetch_add(1, std::memory_order_relaxed); }
  // CPU lanes (server.h, ServerOptions::lanes): how many there are, and the connections each
  // accepted, which shows how evenly the kernel spreads connections over them. Lanes past
  // kMaxLaneSeries are counted in the last series.
  static constexpr size_t kMaxLaneSeries = 256;
  void set_lanes(size_t count) { lanes_.store(count, std::memory_order_relaxed); }
  void record_lane_connection(size_t lane) {
    lane_connections_[std::min(lane, kMaxLaneSeries - 1)].fetch_add(1, std::memory_order_relaxed);
  }

  // The result cache (src/cache/result_cache.h): each invocation of a cacheable version is a "hit"
  // or a "miss" (other names are ignored); entries and bytes are set from the cache.
  void record_cache_lookup(std::string_view result);
  void set_cache_size(int64_t entries, int64_t bytes) {
    cache_entries_.store(entries, std::memory_order_relaxed);
    cache_bytes_.store(bytes, std::memory_order_relaxed);
  }
  // The token cache (src/auth/auth.h), read from the cache itself when /metrics is rendered:
  // token checks it answered (hits), checks that asked the store (misses), tokens it holds.
  // Set once, before serving; without it the series read 0.
  struct TokenCacheFigures {
    uint64_t hits = 0;
    uint64_t misses = 0;
    int64_t entries = 0;
  };
  void watch_token_cache(std::function<TokenCacheFigures()> read) {
    token_cache_ = std::move(read);
  }
  // The worker pool (src/pool/tenant_pool.h), read from the pool when /metrics is rendered:
  // its workers now, by state, and what it has done with workers since corrald started. Set
  // once, before serving; without it the series read 0.
  struct WorkerPoolFigures {
    size_t busy = 0;
    size_t idle = 0;   // bound to a tenant, waiting for its next run
    size_t spare = 0;  // jailed, bound to no tenant yet
    size_t starting = 0;
    size_t stopping = 0;
    size_t max_workers = 0;
    uint64_t memory_budget_bytes = 0;  // --worker-memory-budget
    uint64_t memory_bytes = 0;         // what the live workers are counted at against it
    uint64_t started = 0;
    uint64_t start_failures = 0;
    uint64_t retired = 0;
    uint64_t evicted = 0;
  };
  void watch_worker_pool(std::function<WorkerPoolFigures()> read) {
    worker_pool_ = std::move(read);
  }
  // An invocation through an alias with a canary split, by the side it went to: "canary" or
  // "primary".
  void record_canary_route(bool canary);
  // Stored runs not written (src/runs/run_recorder.h): set from the recorder's count.
  void set_stored_runs_dropped(int64_t count) {
    stored_runs_dropped_.store(count, std::memory_order_relaxed);
  }

  // ---- jobs (src/jobs/jobs.h). Jobs by state now: "queued", "running", "succeeded", "failed",
  // "cancelled" (set from the store about once a second, not per change); runs of jobs by result:
  // "succeeded", "failed", "retried" (crashed, queued again), "deferred" (circuit open, queued
  // again), "cancelled"; webhook tries by result: "delivered", "retry", "dead"; and deliveries
  // dead now. Other names are ignored, so the label sets stay fixed.
  void set_jobs(std::string_view state, int64_t count);
  void record_job_run(std::string_view result);
  void record_webhook_delivery(std::string_view result);
  void record_jobs_pruned(int64_t count) {
    jobs_pruned_.fetch_add(static_cast<uint64_t>(count), std::memory_order_relaxed);
  }
  void set_dead_deliveries(int64_t count) {
    dead_deliveries_.store(count, std::memory_order_relaxed);
  }

  void invocation_started() { in_flight_.fetch_add(1, std::memory_order_relaxed); }
  void invocation_finished() { in_flight_.fetch_sub(1, std::memory_order_relaxed); }

  uint64_t invocations(Outcome outcome) const;
  std::string render() const;

 private:
  std::array<std::atomic<uint64_t>, kOutcomes> invocations_{};
  std::array<std::atomic<uint64_t>, kLatencyBuckets.size()> latency_buckets_{};  // not cumulative
  std::atomic<uint64_t> latency_count_{0};
  std::atomic<uint64_t> latency_sum_micros_{0};
  std::atomic<int64_t> in_flight_{0};

  static constexpr std::array<std::string_view, 3> kQuotas = {"rate", "concurrency",
                                                              "cpu_ms_per_minute"};
  std::array<std::atomic<uint64_t>, kQuotas.size()> quota_rejections_{};
  std::array<std::atomic<uint64_t>, kQuotas.size()> quota_warnings_{};

  static constexpr std::array<std::string_view, 3> kBreakerStates = {"open", "half_open", "closed"};
  std::array<std::atomic<uint64_t>, kBreakerStates.size()> breaker_transitions_{};
  std::atomic<uint64_t> breaker_rejections_{0};
  std::atomic<int64_t> quarantined_versions_{0};

  static constexpr std::array<std::string_view, 4> kAlertRules = {"error_rate", "latency_p99",
                                                                  "fuel", "memory"};
  std::array<std::atomic<uint64_t>, kAlertRules.size()> alerts_raised_{};
  std::array<std::atomic<uint64_t>, kAlertRules.size()> alerts_cleared_{};
  std::atomic<int64_t> alerts_active_{0};

  // Fair queues (set_requests_queued() and the rest).
  static constexpr std::array<std::string_view, 3> kQueueRejections = {"tenant_queue_full",
                                                                       "overloaded", "stopping"};
  std::array<std::atomic<uint64_t>, kQueueRejections.size()> queue_rejections_{};
  std::atomic<uint64_t> refusal_holds_{0};
  std::atomic<uint64_t> connection_refusals_{0};
  std::function<size_t()> connections_open_;
  std::atomic<uint64_t> connection_cap_waits_{0};
  std::atomic<uint64_t> accept_errors_{0};
  std::atomic<size_t> lanes_{0};
  std::array<std::atomic<uint64_t>, kMaxLaneSeries> lane_connections_{};
  std::atomic<int64_t> requests_queued_{0};
  // Not cumulative, as latency_buckets_.
  std::array<std::atomic<uint64_t>, kLatencyBuckets.size()> queue_wait_buckets_{};
  std::atomic<uint64_t> queue_wait_count_{0};
  std::atomic<uint64_t> queue_wait_sum_micros_{0};

  // Result cache, canaries and stored runs.
  std::atomic<uint64_t> cache_hits_{0};
  std::atomic<uint64_t> cache_misses_{0};
  std::atomic<int64_t> cache_entries_{0};
  std::atomic<int64_t> cache_bytes_{0};
  std::array<std::atomic<uint64_t>, 2> canary_routes_{};  // primary, canary
  std::atomic<int64_t> stored_runs_dropped_{0};
  std::function<TokenCacheFigures()> token_cache_;
  std::function<WorkerPoolFigures()> worker_pool_;
  static void render_worker_pool(std::ostream& out, const WorkerPoolFigures& pool);

  // ---- jobs
  void render_jobs(std::ostringstream& out) const;
  static constexpr std::array<std::string_view, 5> kJobStates = {"queued", "running", "succeeded",
                                                                 "failed", "cancelled"};
  static constexpr std::array<std::string_view, 5> kJobRunResults = {
      "succeeded", "failed", "retried", "deferred", "cancelled"};
  static constexpr std::array<std::string_view, 3> kWebhookResults = {"delivered", "retry", "dead"};
  std::array<std::atomic<int64_t>, kJobStates.size()> jobs_{};
  std::array<std::atomic<uint64_t>, kJobRunResults.size()> job_runs_{};
  std::array<std::atomic<uint64_t>, kWebhookResults.size()> webhook_deliveries_{};
  std::atomic<int64_t> dead_deliveries_{0};
  std::atomic<uint64_t> jobs_pruned_{0};

  struct CallTotals {
    uint64_t count = 0;
    double seconds = 0;
  };
  mutable std::mutex calls_mutex_;
  std::map<std::pair<std::string, std::string>, CallTotals> capability_calls_;

  mutable std::mutex http_mutex_;
  std::map<std::pair<std::string, int>, uint64_t> http_requests_;

  // Per tenant and per script; a script's key is its tenant, a NUL, and its name.
  std::unique_ptr<AttributedSeries> tenants_ = std::make_unique<AttributedSeries>();
  std::unique_ptr<AttributedSeries> scripts_ = std::make_unique<AttributedSeries>();
  void render_attributed(std::ostringstream& out) const;
};

// process_* (CPU, resident memory, open descriptors, start time, read from /proc/self) and
// corral_build_info, in the exposition format.
void render_process_metrics(std::ostream& out);
void render_build_info(std::ostream& out);

}  // namespace corral::metrics

#include "metrics/metrics.h"

#include <cmath>
#include <sstream>

namespace corral::metrics {

namespace {

constexpr std::array kAllOutcomes = {Outcome::ok,     Outcome::script_error, Outcome::limit_exceeded,
                                     Outcome::denied, Outcome::rejected,     Outcome::invalid,
                                     Outcome::crashed};
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

void Registry::record_breaker_transition(std::string_view to) {
  for (size_t i = 0; i < kBreakerStates.size(); ++i) {
    if (kBreakerStates[i] == to) breaker_transitions_[i].fetch_add(1, std::memory_order_relaxed);
  }
}

void Registry::record_breaker_rejection() {
  breaker_rejections_.fetch_add(1, std::memory_order_relaxed);
  invocations_[static_cast<size_t>(Outcome::rejected)].fetch_add(1, std::memory_order_relaxed);
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
  std::lock_guard lock(http_mutex_);
  for (const auto& [key, value] : http_requests_) {
    out << "corral_http_requests_total{route=\"" << key.first << "\",code=\"" << key.second
        << "\"} " << value << "\n";
  }
  return out.str();
}

}  // namespace corral::metrics

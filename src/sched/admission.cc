#include "sched/admission.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>

namespace corral::sched {

namespace {

constexpr int64_t kWindowSeconds = 60;
enum QuotaIndex : size_t { kRateIndex, kConcurrencyIndex, kCpuIndex, kQuotaCount };
constexpr std::array<std::string_view, kQuotaCount> kQuotaNames = {kRate, kConcurrency, kCpu};

double seconds_of(TimePoint now) {
  return std::chrono::duration<double>(now.time_since_epoch()).count();
}

int64_t whole_second_of(TimePoint now) { return static_cast<int64_t>(std::floor(seconds_of(now))); }

int64_t at_least_one_second(double seconds) {
  if (!(seconds < 1e9)) return 1'000'000'000;  // also catches NaN; never expected
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(seconds - 1e-9)));
}

size_t slot_of(int64_t second) {
  return static_cast<size_t>(((second % kWindowSeconds) + kWindowSeconds) % kWindowSeconds);
}

int percent_of(double fraction) { return static_cast<int>(std::floor(fraction * 100 + 1e-9)); }

std::string number_text(double value) {
  if (value == std::floor(value) && std::abs(value) < 1e15)
    return std::to_string(static_cast<int64_t>(value));
  std::string text = std::to_string(value);
  text.erase(text.find_last_not_of('0') + 1);
  if (text.back() == '.') text.pop_back();
  return text;
}

}  // namespace

struct TenantState {
  // The token bucket, as last refilled, and the quotas it was last refilled under.
  double tokens = 0;
  double rate = 0;
  double burst = 0;
  TimePoint refilled{};
  int64_t in_flight = 0;
  // CPU ms per second of the window; a slot belongs to the second it records, and is reused
  // (reset) when that second is more than a window ago.
  struct Slot {
    int64_t second = std::numeric_limits<int64_t>::min();
    double cpu_ms = 0;
  };
  std::array<Slot, kWindowSeconds> cpu{};
  TimePoint last_admitted{};
  std::array<std::optional<TimePoint>, kQuotaCount> rejection_audited{};
  std::array<std::optional<TimePoint>, kQuotaCount> warning_audited{};

  void refill(double new_rate, double new_burst, TimePoint now) {
    double elapsed = std::max(0.0, std::chrono::duration<double>(now - refilled).count());
    tokens = std::min(new_burst, tokens + rate * elapsed);
    rate = new_rate;
    burst = new_burst;
    refilled = std::max(refilled, now);
  }

  double cpu_used(TimePoint now) const {
    int64_t current = whole_second_of(now);
    double used = 0;
    for (const Slot& slot : cpu) {
      if (slot.second > current - kWindowSeconds && slot.second <= current) used += slot.cpu_ms;
    }
    return used;
  }

  // Seconds until the CPU in the window drops below `limit`.
  double cpu_wait(double limit, TimePoint now) const {
    int64_t current = whole_second_of(now);
    double used = cpu_used(now);
    for (int64_t second = current - kWindowSeconds + 1; second <= current; ++second) {
      const Slot& slot = cpu[slot_of(second)];
      if (slot.second == second) used -= slot.cpu_ms;
      // The slot of `second` leaves the window when the clock reaches second + window.
      if (used < limit) return static_cast<double>(second + kWindowSeconds) - seconds_of(now);
    }
    return static_cast<double>(kWindowSeconds);
  }

  void add_cpu(double cpu_ms, TimePoint now) {
    int64_t current = whole_second_of(now);
    Slot& slot = cpu[slot_of(current)];
    if (slot.second != current) slot = {current, 0};
    slot.cpu_ms += cpu_ms;
  }

  static bool recent(const std::optional<TimePoint>& stamp, TimePoint now) {
    return stamp && now - *stamp < kAuditInterval;
  }

  // True at most once per kAuditInterval for each quota and kind.
  static bool take_audit_turn(std::optional<TimePoint>& stamp, TimePoint now) {
    if (recent(stamp, now)) return false;
    stamp = now;
    return true;
  }

  // Whether forgetting this tenant changes nothing: a fresh state would decide the same.
  bool same_as_fresh(TimePoint now) const {
    if (in_flight > 0 || cpu_used(now) > 0) return false;
    double elapsed = std::max(0.0, std::chrono::duration<double>(now - refilled).count());
    if (tokens + rate * elapsed < burst) return false;
    for (size_t i = 0; i < kQuotaCount; ++i) {
      if (recent(rejection_audited[i], now) || recent(warning_audited[i], now)) return false;
    }
    return true;
  }
};

Ticket::Ticket(Ticket&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      state_(std::move(other.state_)),
      warnings_(std::move(other.warnings_)),
      reported_(other.reported_) {}

Ticket& Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    release();
    owner_ = std::exchange(other.owner_, nullptr);
    state_ = std::move(other.state_);
    warnings_ = std::move(other.warnings_);
    reported_ = other.reported_;
  }
  return *this;
}

Ticket::~Ticket() { release(); }

void Ticket::release() {
  if (!owner_) return;
  std::lock_guard lock(owner_->mutex_);
  --state_->in_flight;
  owner_ = nullptr;
}

void Ticket::report_cpu(double cpu_ms, TimePoint now) {
  if (!owner_ || reported_) return;
  reported_ = true;
  if (!std::isfinite(cpu_ms) || cpu_ms <= 0) return;
  std::lock_guard lock(owner_->mutex_);
  state_->add_cpu(cpu_ms, now);
}

Decision Admission::admit(std::string_view tenant, const policy::Quotas& quotas, TimePoint now,
                          Rate rate) {
  std::lock_guard lock(mutex_);
  if (now - last_sweep_ >= kSweepInterval) sweep(now);
  auto found = tenants_.find(tenant);
  if (found == tenants_.end()) {
    if (tenants_.size() >= max_tenants_) sweep(now);
    auto state = std::make_shared<TenantState>();
    state->tokens = state->burst = static_cast<double>(quotas.burst.value);
    state->rate = quotas.rate_per_second.value;
    state->refilled = now;
    found = tenants_.emplace(std::string(tenant), std::move(state)).first;
  }
  TenantState& state = *found->second;
  state.refill(quotas.rate_per_second.value, static_cast<double>(quotas.burst.value), now);
  std::string name = "tenant \"" + std::string(tenant) + "\"";

  auto reject = [&](size_t quota, std::string rule, double wait, std::string detail) -> Decision {
    return Rejection{.quota = std::string(kQuotaNames[quota]),
                     .rule = std::move(rule),
                     .retry_after_seconds = at_least_one_second(wait),
                     .detail = std::move(detail),
                     .audit = TenantState::take_audit_turn(state.rejection_audited[quota], now)};
  };
  const double concurrency = static_cast<double>(quotas.concurrency.value);
  const double cpu_limit = static_cast<double>(quotas.cpu_ms_per_minute.value);
  if (static_cast<double>(state.in_flight) >= concurrency) {
    return reject(kConcurrencyIndex, quotas.concurrency.source, 1,
                  name + " already has " + std::to_string(state.in_flight) +
                      " invocations running, its concurrency limit of " +
                      std::to_string(quotas.concurrency.value));
  }
  double cpu_used = state.cpu_used(now);
  if (cpu_used >= cpu_limit) {
    return reject(kCpuIndex, quotas.cpu_ms_per_minute.source, state.cpu_wait(cpu_limit, now),
                  name + " has used " + number_text(std::round(cpu_used)) +
                      " ms of CPU in the last minute, its limit of " +
                      std::to_string(quotas.cpu_ms_per_minute.value));
  }
  if (rate == Rate::invocations && state.tokens < 1) {
    return reject(kRateIndex, quotas.rate_per_second.source, (1 - state.tokens) / state.rate,
                  name + " has used its burst of " + std::to_string(quotas.burst.value) +
                      " invocations and its rate of " + number_text(state.rate) +
                      " per second has not yet refilled one");
  }

  if (rate == Rate::invocations) state.tokens -= 1;
  ++state.in_flight;
  state.last_admitted = now;
  std::vector<Warning> warnings;
  auto warn = [&](size_t quota, double fraction, const std::string& rule) {
    if (fraction < kSoftLimitFraction) return;
    warnings.push_back({.quota = std::string(kQuotaNames[quota]),
                        .percent = percent_of(fraction),
                        .rule = rule,
                        .audit = TenantState::take_audit_turn(state.warning_audited[quota], now)});
  };
  // Whole tokens: what the tenant may still send right now, whatever fraction is refilling.
  warn(kRateIndex, (state.burst - std::floor(state.tokens)) / state.burst,
       quotas.rate_per_second.source);
  warn(kConcurrencyIndex, static_cast<double>(state.in_flight) / concurrency,
       quotas.concurrency.source);
  warn(kCpuIndex, cpu_used / cpu_limit, quotas.cpu_ms_per_minute.source);
  return Ticket(this, found->second, std::move(warnings));
}

void Admission::sweep(TimePoint now) {
  last_sweep_ = now;
  std::erase_if(tenants_, [&](const auto& entry) { return entry.second->same_as_fresh(now); });
  if (tenants_.size() < max_tenants_) return;
  // Still full: forget the least recently admitted tenant that has nothing in flight.
  auto oldest = tenants_.end();
  for (auto it = tenants_.begin(); it != tenants_.end(); ++it) {
    if (it->second->in_flight > 0) continue;
    if (oldest == tenants_.end() || it->second->last_admitted < oldest->second->last_admitted)
      oldest = it;
  }
  if (oldest != tenants_.end()) tenants_.erase(oldest);
}

size_t Admission::tracked_tenants() const {
  std::lock_guard lock(mutex_);
  return tenants_.size();
}

std::string warning_header(const std::vector<Warning>& warnings) {
  std::string header;
  for (const Warning& warning : warnings) {
    if (!header.empty()) header += ", ";
    header += warning.quota + "=" + std::to_string(warning.percent) + "%";
  }
  return header;
}

}  // namespace corral::sched

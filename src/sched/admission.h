// Admission by quota (issue 6, "Quotas and fairness"): before an invocation runs, its tenant's
// quotas from the policy in force decide whether it may start now.
//
// Per tenant, three quotas (policy::Quotas; queued_jobs belongs to jobs, not here):
//   rate               a token bucket: `burst` tokens, refilled at `rate_per_second`; each
//                      admission takes one. Its rule is the rate_per_second setting.
//   concurrency        invocations admitted and not yet finished (tickets alive).
//   cpu_ms_per_minute  CPU milliseconds reported by finished runs in a sliding one-minute window
//                      of one-second slots. A run's cost is known only when it ends, so a run is
//                      refused once the window is full, and the run that crosses the limit is not
//                      cut short (its own limits in the policy bound it).
//
// Contract:
// - admit() checks every quota before it consumes anything: a refused request takes no token and
//   no slot. The first quota found exhausted is named, in the order concurrency, cpu, rate.
// - retry_after_seconds is an honest estimate, never below 1: for rate, when the next token
//   arrives; for concurrency, 1 (a slot frees when some run ends, which cannot be known); for CPU,
//   when enough of the window ages out to drop below the limit.
// - Soft limits: when an admission leaves a quota at kSoftLimitFraction (80 %) of its limit or
//   more, the ticket carries a Warning naming it. Usage is: tokens taken out of the burst (rate),
//   runs in flight including this one (concurrency), CPU in the window (cpu).
// - Audit throttling: a Rejection or Warning has `audit` set for the first of its tenant and quota
//   in any kAuditInterval, so a flood adds at most one audit entry per tenant, quota and kind per
//   minute; the rest are left to the metrics.
// - Time is a parameter (`now`), never read here: tests drive a fake clock, corrald passes
//   steady_clock::now().
// - Quotas may change between calls (a new policy): the bucket is clamped to the new burst, the
//   CPU window and slots carry over.
// - Thread-safe: one mutex guards all state; each call holds it for O(1) work, except a sweep.
// - Memory is bounded: at most max_tenants are tracked. A tenant whose state is the same as a
//   fresh one (no run in flight, bucket full, CPU window empty, nothing audited in the last
//   interval) is forgotten at no cost to anyone; sweeps for such tenants run once per
//   kSweepInterval and whenever the map is full. If it is still full then, the least recently
//   admitted tenant with nothing in flight is forgotten (it gets a fresh bucket: a bounded
//   leniency, documented in docs/operations.md). Tenants with runs in flight are never forgotten;
//   there are at most as many of those as invocation threads.
// - An Admission must outlive its tickets.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "policy/policy.h"

namespace corral::sched {

using TimePoint = std::chrono::steady_clock::time_point;

// The soft limit: a warning from 80 % of a quota.
inline constexpr double kSoftLimitFraction = 0.8;
inline constexpr std::chrono::seconds kAuditInterval{60};
inline constexpr std::chrono::seconds kSweepInterval{60};
inline constexpr size_t kDefaultMaxTenants = 100'000;

// Quota names, as in problems, headers, metrics labels and docs/operations.md.
inline constexpr std::string_view kRate = "rate";
inline constexpr std::string_view kConcurrency = "concurrency";
inline constexpr std::string_view kCpu = "cpu_ms_per_minute";

struct Warning {
  std::string quota;  // kRate, kConcurrency or kCpu
  int percent = 0;    // usage after this admission, rounded down: 80 and up
  std::string rule;   // the policy path of the limit (Setting::source)
  bool audit = false;
};

struct Rejection {
  std::string quota;  // kRate, kConcurrency or kCpu
  std::string rule;  // the policy path that set the limit, e.g. tenants.acme.quotas.rate_per_second
  int64_t retry_after_seconds = 1;
  std::string detail;  // what was exhausted, with the figures, in a sentence
  bool audit = false;
};

class Admission;
struct TenantState;

// An admitted invocation. Holds its concurrency slot until destroyed; report_cpu() feeds the CPU
// window once the run has ended. Movable, not copyable.
class Ticket {
 public:
  Ticket(Ticket&& other) noexcept;
  Ticket& operator=(Ticket&& other) noexcept;
  Ticket(const Ticket&) = delete;
  Ticket& operator=(const Ticket&) = delete;
  ~Ticket();

  const std::vector<Warning>& warnings() const { return warnings_; }
  // Adds the run's CPU time (stats.cpu_ms) to the tenant's window at `now`. Once per ticket;
  // negative or non-finite values count as 0.
  void report_cpu(double cpu_ms, TimePoint now);

 private:
  friend class Admission;
  Ticket(Admission* owner, std::shared_ptr<TenantState> state, std::vector<Warning> warnings)
      : owner_(owner), state_(std::move(state)), warnings_(std::move(warnings)) {}
  void release();

  Admission* owner_ = nullptr;
  std::shared_ptr<TenantState> state_;
  std::vector<Warning> warnings_;
  bool reported_ = false;
};

using Decision = std::variant<Ticket, Rejection>;

class Admission {
 public:
  explicit Admission(size_t max_tenants = kDefaultMaxTenants) : max_tenants_(max_tenants) {}
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  // Whether `tenant` (its name, the key of its quotas) may start an invocation at `now`. A run
  // with a rate of its own (a publish's check, sched/rate_buckets.h) passes `Rate::own`: it is
  // held to concurrency and CPU, and takes no token of the invocation rate.
  enum class Rate { invocations, own };
  Decision admit(std::string_view tenant, const policy::Quotas& quotas, TimePoint now,
                 Rate rate = Rate::invocations);

  // Tenants tracked now, for tests and metrics.
  size_t tracked_tenants() const;

 private:
  friend class Ticket;
  void sweep(TimePoint now);

  const size_t max_tenants_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<TenantState>, std::less<>> tenants_;
  TimePoint last_sweep_{};
};

// "rate=80%, cpu_ms_per_minute=91%": the value of the Corral-Quota-Warning header.
std::string warning_header(const std::vector<Warning>& warnings);

}  // namespace corral::sched

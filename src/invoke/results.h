// What a run through the invoker (invoker.h) comes back as: finished, with what its answer says
// besides the result, or refused before anything ran, with the reason as data. Plain structs: the
// API writes them out as HTTP (api/run_answers.h), a stored run and a job keep that writing.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "invocation/invocation.h"
#include "sched/admission.h"

namespace corral::invoke {

// A run whose script failed because corral could not store what it asked to is rejected, to be
// tried again after this long (as corral's other storage refusals).
inline constexpr int64_t kStorageRetryAfterSeconds = 30;

// An alias moved off a version its breaker quarantined, when it is the alias the call named.
struct AutoRollback {
  std::string alias;
  int64_t from = 0;
  int64_t to = 0;
};

// Why nothing ran, with what the caller's answer needs to say so.
struct Refusal {
  enum class Reason {
    version_disabled,  // the version was disabled by a reviewer or admin
    not_approved,      // pending review, and the caller may not run it (Caller::may_run_pending)
    circuit_open,      // its circuit breaker has it quarantined
    over_quota,        // a tenant's quota is exhausted
  };
  Reason reason = Reason::version_disabled;
  std::string detail = {};  // what happened, in one sentence
  std::string invocation_id = {};
  std::optional<int64_t> policy_version = {};  // unset for a refusal before the policy was read
  int64_t retry_after_seconds = 0;             // circuit_open, over_quota
  nlohmann::json labels = nlohmann::json::object();  // the call's, with deprecated when it applies
  // circuit_open: the breaker's state ("open" or "half_open"), failures, window, when probes
  // start, the policy rule.
  struct Breaker {
    std::string script;
    int64_t version = 0;
    std::string state;
    int64_t failures_in_window = 0;
    int64_t window_seconds = 0;
    int64_t half_open_at_ms = 0;
    std::string rule;
  };
  std::optional<Breaker> breaker = {};
  // over_quota: which quota (sched::kRate, kConcurrency, kCpu), its policy rule, whose it is.
  std::string quota = {};
  std::string rule = {};
  std::string tenant_name = {};
  std::optional<AutoRollback> auto_rollback = {};
};

// How a prepared run ended, and what its answer says besides the result.
struct Finished {
  InvocationResult result;
  nlohmann::json labels;  // the call's, with deprecated when it applies
  int64_t policy_version = 0;
  bool deprecated = false;
  enum class Cache { not_cacheable, hit, miss };
  Cache cache = Cache::not_cacheable;
  std::optional<AutoRollback> auto_rollback;
  std::vector<sched::Warning> quota_warnings;
  // The script failed because corral could not store what it asked to (a kv write on a full
  // disk): its result is rejected, and the answer says corral's storage failed.
  struct StorageFailure {
    bool disk_full = false;
  };
  std::optional<StorageFailure> storage_failure;
  // The limits the run had, and whether the tenant's policy set them (a stored version) or
  // corrald's own (the playground): what a limit_exceeded answer's hint names.
  LimitsPolicy limits;
  bool limits_from_policy = false;
};

}  // namespace corral::invoke

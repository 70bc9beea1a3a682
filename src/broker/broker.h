// The broker: the only door from a script to the outside (DESIGN.md, "Shape"; issue 5,
// "Capabilities"). A worker's capability call arrives here as untrusted JSON; the broker checks
// it against the policy snapshot the invocation started with, performs it (kv, http, emit,
// secrets), counts it against `subrequests`, times and counts it in metrics, and audits it when
// denied (and, when the policy says so, when allowed).
//
// Calls are answered on the invocation's own thread (the one waiting on the worker), never on an
// I/O thread; an http fetch is cut short to the time the run has left.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "audit/audit.h"
#include "broker/http_fetch.h"
#include "broker/kv.h"
#include "broker/secrets.h"
#include "broker/tenant_turns.h"
#include "broker/write_budget.h"
#include "invocation/invocation.h"
#include "metrics/metrics.h"
#include "policy/policy.h"
#include "store/store.h"

namespace corral::broker {

// A capability call of one invocation that failed through no fault of the script: corral's
// store could not write (kv on a full disk). The invoker reads it once the run has ended, to
// answer the run as the service's failure rather than the script's error.
class ServiceFault {
 public:
  void note(const store::StorageUnavailable& failure) {
    std::lock_guard guard(mutex_);
    if (!storage_) storage_ = failure;
  }
  std::optional<store::StorageUnavailable> storage() const {
    std::lock_guard guard(mutex_);
    return storage_;
  }

 private:
  mutable std::mutex mutex_;
  std::optional<store::StorageUnavailable> storage_;
};

// Who is calling, under which rules: fixed when the invocation starts.
struct CallScope {
  // (Each member has an initializer so that designated initializers may leave any of them out.)
  std::string tenant_id = {};
  std::string tenant_name = {};
  std::string script = {};  // for per-script kv; empty for playground runs
  std::string invocation_id = {};
  int64_t policy_version = 0;
  std::shared_ptr<const policy::TenantPolicy> policy = {};
  // The capabilities ctx holds: the manifest's, as far as the policy grants them.
  std::vector<std::string> capabilities = {};
  int64_t subrequests = 0;                   // the run's limit
  std::shared_ptr<ServiceFault> fault = {};  // told of calls that failed by corral's fault
};

class Broker {
 public:
  Broker(store::Store& store, const Sealer& sealer, audit::AuditTrail& audit,
         metrics::Registry& metrics);

  // The handler that answers the calls of one invocation. It keeps its own count of calls, so
  // a worker that lies about its count still meets the limit. The handler refers to this broker,
  // which must outlive it.
  CapabilityHandler handler_for(CallScope scope);

  // Replaces every value of the tenant's secrets in the result's log lines and error message with
  // [redacted:NAME], before the result leaves the supervisor.
  void redact(const std::string& tenant_id, InvocationResult& result);

  SecretsService& secrets() { return secrets_; }
  KvService& kv() { return kv_; }

 private:
  struct Reply;
  Reply perform(const CallScope& scope, const std::string& op, const nlohmann::json& args,
                std::chrono::milliseconds remaining);
  Reply kv_call(const CallScope& scope, const std::string& op, const nlohmann::json& args);
  // An error reply when the write would take the tenant past quotas.store_write_bytes_per_minute.
  std::optional<Reply> over_write_budget(const CallScope& scope, const std::string& call,
                                         int64_t bytes);
  Reply http_call(const CallScope& scope, const nlohmann::json& args,
                  std::chrono::milliseconds remaining);
  // Replaces the secret references in request's header values and body with the values, and
  // confines the request to the origins each used secret is bound to; the values used go in
  // `used`. A reply other than ok (a reference the policy does not let this request carry) ends
  // the call with nothing sent.
  Reply put_secrets(const CallScope& scope, FetchRequest& request,
                    std::vector<std::pair<std::string, std::string>>& used);
  Reply emit_call(const CallScope& scope, const nlohmann::json& args);
  Reply secrets_call(const CallScope& scope, const nlohmann::json& args);
  std::string answer(const CallScope& scope, int64_t& calls, std::string_view call,
                     std::chrono::milliseconds remaining);

  store::Store& store_;
  audit::AuditTrail& audit_;
  metrics::Registry& metrics_;
  KvService kv_;
  SecretsService secrets_;
  TenantTurns store_turns_;
  WriteBudget store_writes_;  // quotas.store_write_bytes_per_minute, per tenant  // kv, emit and
                              // secrets calls take turns at the store by tenant
  HttpFetcher http_;
};

}  // namespace corral::broker

// The /v1 API behind the transport: routes, tokens → principal, who may call what, the registry
// and the audit trail. Server (server.h) reads requests and hands each to Api::handle on a pool
// thread, since answering may wait on the store or on a worker.
//
// Access rules, checked in this order for every route that needs a token:
//   no token, or one unknown, expired or revoked           → 401
//   a {tenant} in the path that is not the token's tenant  → 404, as if it did not exist
//   a role the route does not allow                       → 403
// Every 401, 403 and hidden 404 is recorded in the audit trail, as is every change.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "alerts/alert_webhook.h"
#include "alerts/anomaly_detector.h"
#include "api/responses.h"
#include "audit/audit.h"
#include "auth/auth.h"
#include "broker/broker.h"
#include "cache/result_cache.h"
#include "invocation/executor.h"
#include "invoke/invoker.h"
#include "jobs/jobs.h"
#include "metrics/metrics.h"
#include "policy/policy_service.h"
#include "registry/registry.h"
#include "runs/run_recorder.h"
#include "sched/admission.h"
#include "sched/circuit_breaker.h"
#include "sched/rate_buckets.h"
#include "store/store.h"
#include "usage/usage_ledger.h"

namespace corral::api {

class ThrottledEvents;  // events.h

struct RouteInfo {
  std::string method;
  std::string pattern;            // "/v1/tenants/{tenant}", as in docs/openapi.yaml
  std::string action;             // what the audit trail calls it
  std::vector<auth::Role> roles;  // empty: no token needed
};

struct HttpRequest {
  std::string method;  // "GET", "POST", …
  std::string target;  // path and query, as sent
  std::string authorization;
  std::string content_type;
  std::string body;
  // The Idempotency-Key header, for POST …/jobs; empty when absent.
  std::string idempotency_key = {};
  // The client's address (an IPv6 client's /64), so that what a client causes (denials in the
  // audit trail) can be counted per client.
  std::string client = {};
  // Set by Api::gate(), which matched the route and checked the token before the request queued,
  // so that handle() does neither again.
  const RouteInfo* route = nullptr;
  std::map<std::string, std::string> route_params = {};  // still percent-encoded
  std::optional<auth::Principal> principal = {};
};

// What the I/O thread decides before a request may wait for an invocation thread (Api::gate).
struct Gate {
  // The answer now, without queueing: an unknown route, or a missing, unknown, expired or revoked
  // token. Unauthenticated work never waits in, nor counts against, any tenant's queue.
  std::optional<Response> answer;
  // Otherwise the queue the request waits in: the token's own tenant, whatever tenant the path
  // names (a probe of another tenant's paths waits in the prober's queue); for an admin's token,
  // the tenant the path names; "" when there is none.
  std::string queue_key;
};

// Every route corrald serves (healthz and metrics included), in a fixed order.
const std::vector<RouteInfo>& route_table();

// The route pattern a target falls under, for metrics and logs ("other" if none): bounded,
// never the raw target a client controls.
std::string route_name(std::string_view target);

struct ApiContext {
  store::Store& store;
  audit::AuditTrail& audit;
  registry::Registry& registry;
  Executor& executor;
  metrics::Registry& metrics;
  LimitsPolicy limits;
  std::string openapi_yaml;
  // Pointers so that test setups without them still build; corrald always sets them. Without a
  // policy service the built-in safe default applies; without a broker no capability is offered.
  policy::PolicyService* policy = nullptr;
  broker::Broker* broker = nullptr;
  // The secrets routes (PUT/GET/DELETE /v1/tenants/{tenant}/secrets…); without it they answer 503.
  broker::SecretsService* secrets = nullptr;
  // Admission by the policy's quotas before every invocation and playground run (docs/
  // operations.md); without it nothing is refused for quota.
  sched::Admission* admission = nullptr;
  // The rate of publishes per tenant (quotas.publishes_per_minute); without it, not limited.
  sched::RateBuckets* publishes = nullptr;
  // Tokens that authenticated recently (auth.h, TokenCache); without it every request asks the
  // store. Revoking a token through the API drops it from this cache at once.
  auth::TokenCache* tokens = nullptr;
  // A circuit breaker per script version before every invocation (not playground runs), with
  // automatic rollback of aliases that ask for it (docs/operations.md, "Circuit breakers");
  // without it nothing is quarantined.
  sched::CircuitBreakers* breakers = nullptr;
  // Results of deterministic, capability-free versions (docs/operations.md, "Result cache");
  // without it nothing is cached.
  cache::ResultCache* cache = nullptr;
  // Stored runs (docs/operations.md, "Stored runs and replay"); without it none are stored.
  runs::RunRecorder* runs = nullptr;
  // Jobs and webhooks (POST …/jobs and the rest, docs/operations.md, "Jobs and webhooks");
  // without it those routes answer 503.
  jobs::JobService* jobs = nullptr;
  // Usage for billing (GET /v1/tenants/{tenant}/usage): every invocation and job submission of a
  // tenant is counted; without it nothing is, and the route answers 503.
  usage::UsageLedger* usage = nullptr;
  // Anomaly alerts per script version (docs/observability.md, "Anomaly alerts"): logged, counted,
  // audited, sent to the operator's webhook when there is one, and with the policy's
  // alerts.contain: auto, the version quarantined by its breaker. Without a detector, none.
  alerts::AnomalyDetector* anomalies = nullptr;
  alerts::AlertWebhook* alert_webhook = nullptr;
  // Quota refusals as log events, throttled per tenant and quota (events.h); Api makes it when
  // none is given.
  std::shared_ptr<ThrottledEvents> quota_events = nullptr;
  // The invocation pipeline (invoke/invoker.h) every run of the API goes through, shared with the
  // job runners; without it Api makes its own from the pieces above.
  invoke::Invoker* invoker = nullptr;
};

class Api {
 public:
  explicit Api(ApiContext context);

  // Answers one request; blocks while a script runs. Never throws.
  Response handle(const HttpRequest& request);

  // Before a request queues (on the I/O thread): matches its route and checks its token, setting
  // request.principal so that handle() does not check it again. Never throws; asks the store only
  // for a token that is not in the token cache.
  Gate gate(HttpRequest& request);

  // Answered on the I/O thread, without a token: GET /healthz and GET /metrics are not here.
  const LimitsPolicy& limits() const { return context_.limits; }
  // The policy version in force, for GET /healthz; nullopt without a policy service.
  std::optional<int64_t> policy_version() const;

 private:
  class Call;
  ApiContext context_;
  std::unique_ptr<invoke::Invoker> own_invoker_;  // when the context gives none
};

}  // namespace corral::api

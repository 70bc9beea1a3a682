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

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/responses.h"
#include "audit/audit.h"
#include "auth/auth.h"
#include "broker/broker.h"
#include "invocation/executor.h"
#include "metrics/metrics.h"
#include "policy/policy_service.h"
#include "registry/registry.h"
#include "sched/admission.h"
#include "sched/circuit_breaker.h"
#include "store/store.h"

namespace corral::api {

struct HttpRequest {
  std::string method;  // "GET", "POST", …
  std::string target;  // path and query, as sent
  std::string authorization;
  std::string content_type;
  std::string body;
};

struct RouteInfo {
  std::string method;
  std::string pattern;            // "/v1/tenants/{tenant}", as in docs/openapi.yaml
  std::string action;             // what the audit trail calls it
  std::vector<auth::Role> roles;  // empty: no token needed
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
  // A circuit breaker per script version before every invocation (not playground runs), with
  // automatic rollback of aliases that ask for it (docs/operations.md, "Circuit breakers");
  // without it nothing is quarantined.
  sched::CircuitBreakers* breakers = nullptr;
};

class Api {
 public:
  explicit Api(ApiContext context) : context_(std::move(context)) {}

  // Answers one request; blocks while a script runs. Never throws.
  Response handle(const HttpRequest& request);

  // Answered on the I/O thread, without a token: GET /healthz and GET /metrics are not here.
  const LimitsPolicy& limits() const { return context_.limits; }
  // The policy version in force, for GET /healthz; nullopt without a policy service.
  std::optional<int64_t> policy_version() const;

 private:
  class Call;
  ApiContext context_;
};

}  // namespace corral::api

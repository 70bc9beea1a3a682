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
#include <string>
#include <string_view>
#include <vector>

#include "api/responses.h"
#include "audit/audit.h"
#include "auth/auth.h"
#include "invocation/executor.h"
#include "metrics/metrics.h"
#include "registry/registry.h"
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
};

class Api {
 public:
  explicit Api(ApiContext context) : context_(std::move(context)) {}

  // Answers one request; blocks while a script runs. Never throws.
  Response handle(const HttpRequest& request);

  // Answered on the I/O thread, without a token: GET /healthz and GET /metrics are not here.
  const LimitsPolicy& limits() const { return context_.limits; }

 private:
  class Call;
  ApiContext context_;
};

}  // namespace corral::api

// GET /v1/tenants/{tenant}/usage (docs/observability.md, "Usage for billing"): what a tenant's
// scripts used in a window, by script or by hour, from the usage the ledger keeps in the store
// (usage/usage_ledger.h), and what the tenant stores now.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "store/store.h"

namespace corral::api {

struct UsageQuery {
  enum class By { script, hour };
  int64_t from = 0;  // rounded down to its hour: usage is kept per hour
  int64_t to = 0;    // exclusive
  By by = By::script;
};

// From the query's from=, to= (unix milliseconds or RFC 3339 UTC) and by=script|hour; the window
// defaults to the 24 hours before now. Throws InvalidRequest naming the parameter.
UsageQuery parse_usage_query(const std::map<std::string, std::string>& options, int64_t now_ms);

nlohmann::json usage_report(store::Store& store, const store::Tenant& tenant,
                            const UsageQuery& query);

}  // namespace corral::api

// A tenant's data as a whole, for requests about it (docs/operations.md, "Customer data"): what
// GET /v1/tenants/{tenant}/export answers. Erasing (DELETE /v1/tenants/{tenant}/data) is the
// store's erase_tenant_data plus the caches, done by the API handler.
//
// The export holds everything corrald keeps for the tenant, except what is secret: token secrets
// (only their hashes are stored, and those are left out too), secrets' values (names only) and the
// webhook signing secret (only whether there is one). kv values, sealed at rest, are opened: they
// are the tenant's data. Called on an API thread; reads the store a page at a
// time, and builds the whole document in memory.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include "audit/audit.h"
#include "broker/kv.h"
#include "store/store.h"

namespace corral::api {

struct TenantDataSources {
  store::Store& store;
  audit::AuditTrail& audit;
  broker::KvService* kv = nullptr;  // without it, kv keys are exported without their values
};

nlohmann::json export_tenant_data(const store::Tenant& tenant, const TenantDataSources& sources,
                                  int64_t now_ms);

}  // namespace corral::api

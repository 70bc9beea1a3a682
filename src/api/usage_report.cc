#include "api/usage_report.h"

#include "api/responses.h"
#include "invocation/invocation.h"
#include "usage/usage_ledger.h"

namespace corral::api {
namespace {

using nlohmann::json;

constexpr int64_t kLongestWindowMs = 400LL * 24 * usage::kHourMs;

json counts_json(const store::UsageCounts& counts) {
  return {{"invocations", counts.invocations},
          {"failures", counts.failures},
          {"cpu_ms", static_cast<double>(counts.cpu_us) / 1000},
          {"fuel", counts.fuel},
          {"jobs", counts.jobs}};
}

}  // namespace

UsageQuery parse_usage_query(const std::map<std::string, std::string>& options, int64_t now_ms) {
  UsageQuery query;
  auto time = [&](const char* key, int64_t fallback) {
    auto found = options.find(key);
    if (found == options.end()) return fallback;
    auto parsed = parse_time(found->second);
    if (!parsed || *parsed < 0) {
      throw InvalidRequest(std::string("query.") + key,
                           std::string(key) +
                               " must be unix milliseconds or an RFC 3339 UTC time such as "
                               "2026-11-01T00:00:00Z");
    }
    return *parsed;
  };
  query.to = time("to", now_ms);
  query.from = usage::hour_of(time("from", query.to - 24 * usage::kHourMs));
  if (query.from >= query.to) {
    throw InvalidRequest("query.from", "from must be before to (from is rounded down to its hour)");
  }
  if (query.to - query.from > kLongestWindowMs) {
    throw InvalidRequest("query.to",
                         "the window from from to to is longer than 400 days; ask for it in parts");
  }
  if (auto by = options.find("by"); by != options.end()) {
    if (by->second == "hour") {
      query.by = UsageQuery::By::hour;
    } else if (by->second != "script") {
      throw InvalidRequest("query.by", "by must be script or hour");
    }
  }
  return query;
}

json usage_report(store::Store& store, const store::Tenant& tenant, const UsageQuery& query) {
  // Both groupings keep their rows in order: scripts by name, hours from the earliest.
  std::map<std::string, store::UsageCounts> by_script;
  std::map<int64_t, store::UsageCounts> by_hour;
  store::UsageCounts total;
  for (const auto& row : store.read_usage(tenant.id, query.from, query.to)) {
    by_script[row.script] += row.counts;
    by_hour[row.hour] += row.counts;
    total += row.counts;
  }
  json rows = json::array();
  if (query.by == UsageQuery::By::script) {
    for (const auto& [script, counts] : by_script) {
      json row = counts_json(counts);
      // Playground runs belong to no script.
      row["script"] = script.empty() ? json() : json(script);
      rows.push_back(std::move(row));
    }
  } else {
    for (const auto& [hour, counts] : by_hour) {
      json row = counts_json(counts);
      row["hour"] = store::iso8601(hour);
      rows.push_back(std::move(row));
    }
  }
  store::VersionUsage versions = store.version_usage(tenant.id);
  store::KvUsage kv;
  for (const auto& ns : store.list_kv_namespaces(tenant.id)) {
    store::KvUsage used = store.kv_usage(tenant.id, ns);
    kv.keys += used.keys;
    kv.bytes += used.bytes;
  }
  return {{"tenant", tenant.name},
          {"from", store::iso8601(query.from)},
          {"to", store::iso8601(query.to)},
          {"by", query.by == UsageQuery::By::script ? "script" : "hour"},
          {"usage", rows},
          {"total", counts_json(total)},
          {"storage",
           {{"versions", versions.versions},
            {"version_bytes", versions.source_bytes},
            {"kv_keys", kv.keys},
            {"kv_bytes", kv.bytes}}}};
}

}  // namespace corral::api

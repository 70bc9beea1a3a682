#include "api/tenant_data.h"

#include "jobs/jobs.h"

namespace corral::api {

namespace {

using nlohmann::json;
using store::iso8601;

json time_or_null(std::optional<int64_t> ms) { return ms ? json(iso8601(*ms)) : json(); }

// JSON text as stored, as JSON again; text that does not parse (a hand-edited row) as a string.
json parsed(const std::string& text) {
  json value = json::parse(text, nullptr, false);
  return value.is_discarded() ? json(text) : value;
}

json tokens_json(store::Store& store, const store::Tenant& tenant) {
  json tokens = json::array();
  for (const auto& token : store.list_tokens(tenant.id)) {
    tokens.push_back({{"id", token.id},
                      {"role", token.role},
                      {"subject", token.subject},
                      {"created_by", token.created_by},
                      {"created_at", iso8601(token.created_at)},
                      {"expires_at", time_or_null(token.expires_at)},
                      {"revoked_at", time_or_null(token.revoked_at)}});
  }
  return tokens;
}

json scripts_json(store::Store& store, const store::Tenant& tenant) {
  json scripts = json::array();
  for (const auto& summary : store.list_scripts(tenant.id)) {
    json versions = json::array();
    for (const auto& version : store.list_versions(tenant.id, summary.name)) {
      versions.push_back(
          {{"version", version.version},
           {"sha256", version.sha256},
           {"state", store::to_string(version.state)},
           {"manifest", parsed(version.manifest)},
           {"source", version.source},
           {"published_by", version.published_by},
           {"published_at", iso8601(version.published_at)},
           {"approved_by", version.approved_by ? json(*version.approved_by) : json()},
           {"approved_at", time_or_null(version.approved_at)},
           {"signed_by", version.signed_by ? json(*version.signed_by) : json()}});
    }
    json aliases = json::array();
    for (const auto& alias : store.list_aliases(tenant.id, summary.name)) {
      json history = json::array();
      for (const auto& change : store.alias_history(tenant.id, summary.name, alias.name, 1000000)) {
        history.push_back({{"version", change.version},
                           {"previous_version",
                            change.previous_version ? json(*change.previous_version) : json()},
                           {"change", change.rolled_back_from > 0 ? "auto_rollback" : "set"},
                           {"changed_by", change.changed_by},
                           {"changed_at", iso8601(change.changed_at)}});
      }
      aliases.push_back(
          {{"alias", alias.name},
           {"version", alias.version},
           {"auto_rollback", alias.auto_rollback},
           {"canary", alias.canary_weight > 0
                          ? json{{"version", alias.canary_version}, {"weight", alias.canary_weight}}
                          : json()},
           {"history", history}});
    }
    scripts.push_back({{"script", summary.name}, {"versions", versions}, {"aliases", aliases}});
  }
  return scripts;
}

json stored_runs_json(store::Store& store, const store::Tenant& tenant) {
  json runs = json::array();
  for (const auto& summary : store.list_scripts(tenant.id)) {
    // The policy keeps at most 1,000 runs per script (runs.keep).
    for (const auto& run : store.list_runs(tenant.id, summary.name, 1000)) {
      runs.push_back({{"script", run.script},
                      {"id", run.id},
                      {"version", run.version},
                      {"time", iso8601(run.time_ms)},
                      {"outcome", run.outcome},
                      {"input", run.input ? parsed(*run.input) : json()},
                      {"result", parsed(run.result)}});
    }
  }
  return runs;
}

json jobs_json(store::Store& store, const store::Tenant& tenant) {
  json jobs = json::array();
  store::JobListing listing{.limit = 200};
  for (;;) {
    auto page = store.list_jobs(tenant.id, listing);
    for (const auto& job : page) jobs.push_back(jobs::job_json(job, tenant.name));
    if (static_cast<int64_t>(page.size()) < listing.limit) break;
    listing.before_id = page.back().id;
  }
  return jobs;
}

json deliveries_json(store::Store& store, const store::Tenant& tenant) {
  json deliveries = json::array();
  std::optional<std::string> before;
  constexpr int64_t kPage = 200;
  for (;;) {
    auto page = store.list_deliveries(tenant.id, std::nullopt, before, kPage);
    for (const auto& delivery : page) deliveries.push_back(jobs::delivery_json(delivery));
    if (static_cast<int64_t>(page.size()) < kPage) break;
    before = page.back().id;
  }
  return deliveries;
}

json kv_json(const TenantDataSources& sources, const store::Tenant& tenant) {
  json entries = json::array();
  constexpr int64_t kPage = 500;
  for (const auto& ns : sources.store.list_kv_namespaces(tenant.id)) {
    broker::KvScope scope{.tenant_id = tenant.id, .ns = ns};
    std::optional<std::string> after;
    for (;;) {
      std::vector<std::string> keys =
          sources.kv ? sources.kv->list(scope, "", kPage, after)
                     : sources.store.list_kv_keys(tenant.id, ns,
                                                  {.prefix = "", .after = after, .limit = kPage});
      for (const auto& key : keys) {
        json value;
        if (sources.kv) {
          auto text = sources.kv->get(scope, key);
          value = text ? parsed(*text) : json();
        }
        entries.push_back({{"namespace", ns}, {"key", key}, {"value", value}});
      }
      if (static_cast<int64_t>(keys.size()) < kPage) break;
      after = keys.back();
    }
  }
  return entries;
}

json events_json(store::Store& store, const store::Tenant& tenant) {
  json events = json::array();
  int64_t after = 0;
  constexpr int64_t kPage = 1000;
  for (;;) {
    auto page = store.read_events(tenant.id, after, kPage);
    for (const auto& event : page) {
      events.push_back({{"seq", event.seq},
                        {"topic", event.topic},
                        {"payload", parsed(event.payload)},
                        {"created_at", iso8601(event.created_at)}});
    }
    if (static_cast<int64_t>(page.size()) < kPage) break;
    after = page.back().seq;
  }
  return events;
}

json audit_json(audit::AuditTrail& trail, const store::Tenant& tenant) {
  json entries = json::array();
  audit::Filter filter{.tenant = tenant.name, .limit = 1000};
  for (;;) {
    auto page = trail.query(filter);
    for (const auto& entry : page) {
      entries.push_back({{"seq", entry.seq},
                         {"time", iso8601(entry.time_ms)},
                         {"principal", entry.principal},
                         {"action", entry.action},
                         {"target", entry.target},
                         {"decision", entry.decision},
                         {"reason", entry.reason}});
    }
    if (static_cast<int64_t>(page.size()) < filter.limit) break;
    filter.after_seq = page.back().seq;
  }
  return entries;
}

}  // namespace

json export_tenant_data(const store::Tenant& tenant, const TenantDataSources& sources,
                        int64_t now_ms) {
  store::Store& store = sources.store;
  json secrets = json::array();
  for (const auto& secret : store.list_secrets(tenant.id))
    secrets.push_back({{"name", secret.name}, {"updated_at", iso8601(secret.updated_at)}});
  return {{"tenant",
           {{"id", tenant.id}, {"name", tenant.name}, {"created_at", iso8601(tenant.created_at)}}},
          {"exported_at", iso8601(now_ms)},
          {"tokens", tokens_json(store, tenant)},
          {"scripts", scripts_json(store, tenant)},
          {"stored_runs", stored_runs_json(store, tenant)},
          {"jobs", jobs_json(store, tenant)},
          {"webhook_deliveries", deliveries_json(store, tenant)},
          {"kv", kv_json(sources, tenant)},
          {"events", events_json(store, tenant)},
          {"secrets", secrets},
          {"webhook_secret", {{"exists", store.find_webhook_secret(tenant.id).has_value()}}},
          {"audit", audit_json(sources.audit, tenant)}};
}

}  // namespace corral::api

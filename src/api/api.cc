#include "api/api.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <ctime>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <utility>

#include "api/events.h"
#include "api/run_answers.h"
#include "api/tenant_data.h"
#include "api/usage_report.h"

namespace corral::api {

namespace {

using auth::Role;
using nlohmann::json;

constexpr Role kAdmin = Role::admin, kPublisher = Role::publisher, kReviewer = Role::reviewer,
               kInvoker = Role::invoker, kAuditor = Role::auditor;

const std::vector<Role> kEveryRole = {kAdmin, kPublisher, kReviewer, kInvoker, kAuditor};

const std::string kScriptPath = "/v1/tenants/{tenant}/scripts/{script}";
const std::string kVersionPath = kScriptPath + "/versions/{version}";

const std::vector<RouteInfo> kRoutes = {
    {"GET", "/healthz", "health", {}},
    {"GET", "/metrics", "metrics", {}},
    {"GET", "/v1/openapi.yaml", "openapi", {}},
    {"POST", "/v1/run", "run", {kAdmin, kPublisher, kReviewer}},
    {"POST", "/v1/tenants", "tenant.create", {kAdmin}},
    {"GET", "/v1/tenants", "tenant.list", kEveryRole},
    {"GET", "/v1/tenants/{tenant}", "tenant.read", kEveryRole},
    // A tenant's data on request (docs/operations.md, "Customer data"): all of it, or erased.
    {"GET", "/v1/tenants/{tenant}/export", "tenant.export", {kAdmin}},
    // What a tenant used, for billing: its operators, auditors and developers read it.
    {"GET", "/v1/tenants/{tenant}/usage", "tenant.usage", {kAdmin, kAuditor, kPublisher}},
    {"DELETE", "/v1/tenants/{tenant}/data", "tenant.data.erase", {kAdmin}},
    {"GET", "/v1/tokens", "token.list", {kAdmin}},
    {"POST", "/v1/tokens", "token.create", {kAdmin}},
    {"DELETE", "/v1/tokens/{token}", "token.revoke", {kAdmin}},
    {"GET", "/v1/tenants/{tenant}/tokens", "token.list", {kAdmin}},
    {"POST", "/v1/tenants/{tenant}/tokens", "token.create", {kAdmin}},
    {"DELETE", "/v1/tenants/{tenant}/tokens/{token}", "token.revoke", {kAdmin}},
    {"GET", "/v1/tenants/{tenant}/scripts", "script.list", kEveryRole},
    {"GET", kScriptPath + "/versions", "version.list", kEveryRole},
    {"POST", kScriptPath + "/versions", "version.publish", {kPublisher}},
    {"GET", kVersionPath, "version.read", kEveryRole},
    {"POST", kVersionPath + "/approve", "version.approve", {kReviewer}},
    {"POST", kVersionPath + "/deprecate", "version.deprecate", {kReviewer}},
    {"POST", kVersionPath + "/disable", "version.disable", {kReviewer, kAdmin}},
    {"GET", kScriptPath + "/aliases", "alias.list", kEveryRole},
    {"PUT", kScriptPath + "/aliases/{alias}", "alias.set", {kReviewer}},
    {"GET", kScriptPath + "/aliases/{alias}/history", "alias.history", kEveryRole},
    {"POST", kScriptPath + "/invoke", "script.invoke", {kInvoker, kPublisher, kReviewer}},
    {"GET", kScriptPath + "/runs", "run.list", {kAdmin, kPublisher, kReviewer, kAuditor}},
    {"GET", kScriptPath + "/runs/{run}", "run.read", {kAdmin, kPublisher, kReviewer, kAuditor}},
    {"POST", kVersionPath + "/replay", "version.replay", {kPublisher, kReviewer}},
    {"GET", "/v1/audit", "audit.read", {kAdmin, kAuditor}},
    {"GET", "/v1/audit/verify", "audit.verify", {kAdmin, kAuditor}},
    {"GET", "/v1/policy", "policy.read", {kAdmin}},
    {"PUT", "/v1/policy", "policy.update", {kAdmin}},
    {"GET", "/v1/policy/versions", "policy.versions", {kAdmin}},
    {"POST", "/v1/policy/rollback", "policy.rollback", {kAdmin}},
    {"GET", "/v1/policy/explain", "policy.explain", {kAdmin, kAuditor}},
    {"GET", "/v1/tenants/{tenant}/secrets", "secret.list", {kAdmin}},
    {"PUT", "/v1/tenants/{tenant}/secrets/{name}", "secret.put", {kAdmin}},
    {"DELETE", "/v1/tenants/{tenant}/secrets/{name}", "secret.delete", {kAdmin}},
    // The tenant's own service consumes its outbox (invoker), its developers and auditors read it.
    {"GET", "/v1/tenants/{tenant}/events", "event.list", {kAdmin, kPublisher, kInvoker, kAuditor}},
    // Jobs: submitted by those who may invoke, read by every role of the tenant.
    {"POST", kScriptPath + "/jobs", "job.submit", {kInvoker, kPublisher, kReviewer}},
    {"GET", kScriptPath + "/jobs", "job.list", kEveryRole},
    {"GET", kScriptPath + "/jobs/{job}", "job.read", kEveryRole},
    {"DELETE",
     kScriptPath + "/jobs/{job}",
     "job.cancel",
     {kAdmin, kInvoker, kPublisher, kReviewer}},
    {"POST", "/v1/tenants/{tenant}/webhook-secret", "webhook.secret.rotate", {kAdmin}},
    {"GET",
     "/v1/tenants/{tenant}/deliveries",
     "webhook.delivery.list",
     {kAdmin, kAuditor, kPublisher}},
};

// An answer decided part-way through a handler; becomes the response.
struct Answer {
  Response response;
};

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> segments;
  size_t begin = 1;
  while (begin <= path.size()) {
    size_t end = path.find('/', begin);
    if (end == std::string_view::npos) end = path.size();
    segments.push_back(path.substr(begin, end - begin));
    begin = end + 1;
  }
  return segments;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space) {
  std::string decoded;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      int high = hex_value(text[i + 1]);
      int low = hex_value(text[i + 2]);
      if (high < 0 || low < 0) return std::nullopt;
      decoded.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else if (plus_is_space && text[i] == '+') {
      decoded.push_back(' ');
    } else {
      decoded.push_back(text[i]);
    }
  }
  return decoded;
}

struct Match {
  const RouteInfo* route = nullptr;
  std::map<std::string, std::string> params;  // still percent-encoded
  std::vector<std::string> allowed_methods;   // when the path matches but not the method
};

bool path_matches(const RouteInfo& route, const std::vector<std::string_view>& segments,
                  std::map<std::string, std::string>& params) {
  auto pattern = split_path(route.pattern);
  if (pattern.size() != segments.size()) return false;
  std::map<std::string, std::string> found;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i].starts_with('{')) {
      if (segments[i].empty()) return false;
      found[std::string(pattern[i].substr(1, pattern[i].size() - 2))] = segments[i];
    } else if (pattern[i] != segments[i]) {
      return false;
    }
  }
  params = std::move(found);
  return true;
}

Match match(std::string_view method, std::string_view path) {
  Match result;
  auto segments = split_path(path);
  for (const auto& route : kRoutes) {
    std::map<std::string, std::string> params;
    if (!path_matches(route, segments, params)) continue;
    if (route.method == method) {
      result.route = &route;
      result.params = std::move(params);
      result.allowed_methods.clear();
      return result;
    }
    result.allowed_methods.push_back(route.method);
  }
  return result;
}

using store::iso8601;

json tenant_json(const store::Tenant& tenant) {
  return {{"id", tenant.id}, {"name", tenant.name}, {"created_at", iso8601(tenant.created_at)}};
}

json version_json(const store::ScriptVersion& version, const std::string& tenant_name,
                  bool with_source) {
  json manifest = json::parse(version.manifest, nullptr, false);
  json body = {{"tenant", tenant_name},
               {"script", version.script},
               {"version", version.version},
               {"sha256", version.sha256},
               {"state", store::to_string(version.state)},
               {"manifest", manifest.is_discarded() ? json(version.manifest) : manifest},
               {"published_by", version.published_by},
               {"published_at", iso8601(version.published_at)},
               {"approved_by", version.approved_by ? json(*version.approved_by) : json()},
               {"approved_at", version.approved_at ? json(iso8601(*version.approved_at)) : json()},
               {"signed_by", version.signed_by ? json(*version.signed_by) : json()}};
  if (with_source) body["source"] = version.source;
  return body;
}

json alias_json(const store::Alias& alias) {
  return {{"script", alias.script},
          {"alias", alias.name},
          {"version", alias.version},
          {"updated_by", alias.updated_by},
          {"updated_at", iso8601(alias.updated_at)},
          {"auto_rollback", alias.auto_rollback},
          {"rolled_back_from", alias.rolled_back_from > 0 ? json(alias.rolled_back_from) : json()},
          {"canary", alias.canary_weight > 0
                         ? json{{"version", alias.canary_version}, {"weight", alias.canary_weight}}
                         : json()}};
}

json alias_change_json(const store::AliasChange& change) {
  return {{"seq", change.seq},
          {"version", change.version},
          {"previous_version", change.previous_version ? json(*change.previous_version) : json()},
          {"change", change.rolled_back_from > 0 ? "auto_rollback" : "set"},
          {"auto_rollback", change.auto_rollback},
          {"canary", change.canary_weight > 0 ? json{{"version", change.canary_version},
                                                     {"weight", change.canary_weight}}
                                              : json()},
          {"changed_by", change.changed_by},
          {"changed_at", iso8601(change.changed_at)}};
}

json audit_json(const audit::Entry& entry) {
  return {{"seq", entry.seq},         {"time", iso8601(entry.time_ms)},
          {"time_ms", entry.time_ms}, {"principal", entry.principal},
          {"tenant", entry.tenant},   {"action", entry.action},
          {"target", entry.target},   {"decision", entry.decision},
          {"reason", entry.reason},   {"prev_hash", entry.prev_hash},
          {"hash", entry.hash}};
}

Response json_response(int status, const json& body) {
  return {.status = status,
          .content_type = "application/json",
          .body = body.dump(-1, ' ', false, json::error_handler_t::replace),
          .headers = {}};
}

// "Application/YAML; charset=utf-8" → "application/yaml".
std::string media_type(std::string_view content_type) {
  std::string media(content_type.substr(0, content_type.find(';')));
  while (!media.empty() && media.back() == ' ') media.pop_back();
  for (char& c : media) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return media;
}

json time_or_null(int64_t ms) { return ms > 0 ? json(iso8601(ms)) : json(); }

// Beside each of `keys` that names a token, "<key>_subject": the person or service the token was
// made for, so that a listing reads "alice@example.com" rather than a 32-hex id. Null for
// "system", "policy", "bootstrap", "anonymous" and tokens made without a subject. Only answers
// change: stored rows, and so the audit chain's hashes, keep the ids. `known` spares a page of
// entries by the same few tokens one lookup each.
void add_subjects(json& object, std::initializer_list<const char*> keys, store::Store& store,
                  std::map<std::string, json>& known) {
  for (const char* key : keys) {
    if (!object.contains(key)) continue;
    json subject;
    if (object[key].is_string()) {
      const std::string id = object[key].get<std::string>();
      auto found = known.find(id);
      if (found == known.end()) {
        auto token = store.find_token(id);
        found = known.emplace(id, token && !token->subject.empty() ? json(token->subject) : json())
                    .first;
      }
      subject = found->second;
    }
    object[std::string(key) + "_subject"] = subject;
  }
}

json snapshot_json(const policy::Snapshot& snapshot) {
  return {{"version", snapshot.version},
          {"created_by", snapshot.created_by},
          {"created_at", time_or_null(snapshot.created_at)},
          {"document", snapshot.policy.text()}};
}

bool is_json_media(std::string_view content_type) {
  std::string media(content_type.substr(0, content_type.find(';')));
  while (!media.empty() && media.back() == ' ') media.pop_back();
  for (char& c : media) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return media == "application/json";
}

std::string roles_text(const std::vector<Role>& roles) {
  std::string text;
  for (size_t i = 0; i < roles.size(); ++i) {
    if (i) text += i + 1 == roles.size() ? " or " : ", ";
    text += auth::to_string(roles[i]);
  }
  return text;
}

}  // namespace

const std::vector<RouteInfo>& route_table() { return kRoutes; }

std::string route_name(std::string_view target) {
  std::string_view path = target.substr(0, target.find('?'));
  auto segments = split_path(path);
  for (const auto& route : kRoutes) {
    std::map<std::string, std::string> params;
    if (path_matches(route, segments, params)) return route.pattern;
  }
  return "other";
}

// One request being answered: its principal, parameters and the helpers its handler uses.
class Api::Call {
 public:
  Call(ApiContext& context, const HttpRequest& request) : context_(context), request_(request) {}

  Response run() {
    Response response = guarded([&] { return dispatch(); });
    name_in_log(response.names);
    return response;
  }

  // `out` is the request this call answers: what is decided here is kept in it.
  Gate gate(HttpRequest& out) {
    std::string_view target = request_.target;
    Match found = match(request_.method, target.substr(0, target.find('?')));
    if (!found.route) return {.answer = run(), .queue_key = ""};  // 404 or 405: no store, no token
    out.route = found.route;
    out.route_params = found.params;
    if (found.route->roles.empty()) return {.answer = std::nullopt, .queue_key = ""};
    bool authenticated = false;
    Response refused = guarded([&] {
      authenticate();
      authenticated = true;
      return Response{};
    });
    if (!authenticated) return {.answer = std::move(refused), .queue_key = ""};
    Gate gate{.answer = std::nullopt, .queue_key = ""};
    if (!principal_.tenant_id.empty()) {
      gate.queue_key = principal_.tenant_name;
    } else if (auto tenant = found.params.find("tenant"); tenant != found.params.end()) {
      // Tenant names are at most 64 bytes: a longer segment names none, and is cut.
      gate.queue_key = percent_decode(tenant->second, false).value_or("").substr(0, 64);
    }
    out.principal = principal_;
    return gate;
  }

 private:
  template <typename Work>
  Response guarded(Work work) {
    try {
      return work();
    } catch (Answer& answer) {
      return std::move(answer.response);
    } catch (const registry::InvalidInput& error) {
      json extra = {{"field", error.field}};
      if (error.line > 0) extra["line"] = error.line;
      if (error.column > 0) extra["column"] = error.column;
      return problem(400, "invalid", "The request is invalid",
                     std::string(error.what()) + " (at " + error.field + ")", error.hint, "",
                     extra);
    } catch (const registry::Refusal& refusal) {
      if (refusal.status == 403) deny(refusal.what());
      return problem(refusal.status, refusal.slug, refusal.title, refusal.what(), refusal.hint);
    } catch (const InvalidRequest& error) {
      return problem(400, "invalid", "The request is invalid",
                     std::string(error.what()) + " (at " + error.where + ")",
                     "correct the field named and send the request again", "",
                     {{"field", error.where}});
    } catch (const store::NotFound& error) {
      return problem(404, "not-found", "Not found", error.what(), "check the names in the path");
    } catch (const store::Conflict& error) {
      return problem(409, "conflict", "Conflict", error.what(), "choose another name");
    } catch (const store::StorageUnavailable& failure) {
      log_storage_failure(failure);
      return storage_unavailable(failure.disk_full());
    } catch (const store::StoreError& error) {
      // The store's messages name its database file and quote SQLite: for the log only.
      spdlog::error(
          json(
              {{"level", "error"}, {"msg", "request failed in the store"}, {"error", error.what()}})
              .dump(-1, ' ', false, json::error_handler_t::replace));
      return problem(500, "internal", "The server could not complete the request",
                     "corral's store could not complete the request",
                     "retry; if it persists, tell the operator (corrald's log has the cause)");
    } catch (const std::exception& error) {
      spdlog::error(json({{"level", "error"}, {"msg", "request failed"}, {"error", error.what()}})
                        .dump(-1, ' ', false, json::error_handler_t::replace));
      return problem(
          500, "internal", "The server could not complete the request", error.what(),
          "retry; if it persists, tell the operator (the server log has the same message)");
    }
  }

 private:
  Response dispatch() {
    std::string_view target = request_.target;
    std::string_view path = target.substr(0, target.find('?'));
    if (target.find('?') != std::string_view::npos)
      query_text_ = target.substr(target.find('?') + 1);
    Match found;
    if (request_.route) {
      found.route = request_.route;
      found.params = request_.route_params;
    } else {
      found = match(request_.method, path);
    }
    if (!found.route) {
      if (!found.allowed_methods.empty()) {
        std::string allowed;
        for (const auto& method : found.allowed_methods)
          allowed += (allowed.empty() ? "" : ", ") + method;
        Response response =
            problem(405, "method-not-allowed", "Method not allowed",
                    request_.method + " is not served at " + route_name(path), "use " + allowed);
        response.headers.emplace_back("Allow", allowed);
        response.paced_per_client = true;
        return response;
      }
      // A client sweeping paths can repeat this at will, as it can a bad token.
      Response response = problem(404, "not-found", "No such route",
                                  "nothing is served at " + std::string(path.substr(0, 200)),
                                  "GET /v1/openapi.yaml lists every route");
      response.paced_per_client = true;
      return response;
    }
    route_ = found.route;
    for (const auto& [name, raw] : found.params) {
      auto decoded = percent_decode(raw, false);
      if (!decoded) {
        throw registry::InvalidInput(name, "the " + name + " in the path has a malformed %-escape",
                                     "escape bytes as %XX with two hex digits");
      }
      params_[name] = *decoded;
    }
    if (route_->pattern == "/v1/openapi.yaml") {
      return {.status = 200,
              .content_type = "application/yaml",
              .body = context_.openapi_yaml,
              .headers = {}};
    }
    authenticate();
    if (params_.contains("tenant")) resolve_tenant();
    if (std::find(route_->roles.begin(), route_->roles.end(), principal_.role) ==
        route_->roles.end()) {
      std::string detail = "a token with role " + std::string(auth::to_string(principal_.role)) +
                           " may not " + route_->method + " " + route_->pattern;
      deny(detail);
      Response response = problem(403, "forbidden", "Your token does not allow this", detail,
                                  "this route needs a token with role " +
                                      roles_text(route_->roles) + "; ask an admin for one");
      response.paced_per_client = true;
      throw Answer{std::move(response)};
    }
    const std::string& action = route_->action;
    const std::string& pattern = route_->pattern;
    if (pattern == "/v1/run") return run_playground();
    if (action == "tenant.create") return create_tenant();
    if (action == "tenant.list") return list_tenants();
    if (action == "tenant.read") return json_response(200, tenant_json(*tenant_));
    if (action == "tenant.export") return export_tenant();
    if (action == "tenant.usage") return read_usage();
    if (action == "tenant.data.erase") return erase_tenant_data();
    if (action == "token.list") return list_tokens();
    if (action == "token.create") return create_token();
    if (action == "token.revoke") return revoke_token();
    if (action == "script.list") return list_scripts();
    if (action == "version.list") return list_versions();
    if (action == "version.publish") return publish();
    if (action == "version.read") return read_version();
    if (action == "version.approve" || action == "version.deprecate" ||
        action == "version.disable") {
      return change_state();
    }
    if (action == "alias.list") return list_aliases();
    if (action == "alias.set") return set_alias();
    if (action == "alias.history") return alias_history();
    if (action == "script.invoke") return invoke();
    if (action == "run.list") return list_runs();
    if (action == "run.read") return read_run();
    if (action == "version.replay") return replay();
    if (action == "audit.read") return read_audit();
    if (action == "audit.verify") return verify_audit();
    if (action.starts_with("policy.")) return policy_route(action);
    if (action == "secret.list") return list_secrets();
    if (action == "secret.put") return put_secret();
    if (action == "secret.delete") return delete_secret();
    if (action == "event.list") return list_events();
    if (action.starts_with("job.") || action.starts_with("webhook.")) return jobs_route(action);
    return problem(500, "internal", "Route without a handler", "no handler for " + pattern,
                   "report this to the corral developers");
  }

  // ---- access

  // A request with a principal was authenticated by gate() on the I/O thread already.
  void authenticate() {
    if (request_.principal) {
      principal_ = *request_.principal;
      return;
    }
    auto outcome = auth::authenticate(context_.store, request_.authorization, store::now_ms(),
                                      context_.tokens);
    if (auto* failure = std::get_if<auth::Unauthenticated>(&outcome)) {
      // In no tenant's trail, whatever the path names: the caller proved nothing. Repeats from one
      // client are one entry with a count, so that a flood of bad tokens cannot grow the trail.
      try {
        context_.audit.record_denial("client " + request_.client,
                                     failure->token_id.empty() ? "anonymous" : failure->token_id,
                                     "", "auth", audit_target(), failure->detail);
      } catch (const store::StorageUnavailable& full) {
        log_storage_failure(full);  // the caller is refused all the same
      }
      Response response = problem(401, "unauthenticated", "A valid token is needed",
                                  failure->detail, failure->hint);
      response.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"corral\"");
      response.paced_per_client = true;
      throw Answer{std::move(response)};
    }
    principal_ = std::get<auth::Principal>(outcome);
  }

  // Another tenant's name answers exactly as a tenant that does not exist, so that a token
  // learns nothing about tenants other than its own.
  void resolve_tenant() {
    const std::string& name = params_["tenant"];
    registry::check_name("tenant name", "tenant", name);
    std::string detail = "no tenant named \"" + name + "\" is visible to this token";
    std::string hint = principal_.role == Role::admin
                           ? "GET /v1/tenants lists the tenants"
                           : "your token belongs to tenant \"" + principal_.tenant_name + "\"";
    if (!principal_.tenant_id.empty() && name != principal_.tenant_name) {
      deny("tenant \"" + name + "\" is not the token's tenant");
      Response response = problem(404, "not-found", "No such tenant", detail, hint);
      response.paced_per_client = true;
      throw Answer{std::move(response)};
    }
    tenant_ = context_.store.find_tenant_by_name(name);
    if (!tenant_) throw Answer{problem(404, "not-found", "No such tenant", detail, hint)};
  }

  // Denials repeat at the caller's will: one entry per token, action and minute, with a count.
  void deny(const std::string& reason) {
    std::string principal = principal_.token_id.empty() ? "anonymous" : principal_.token_id;
    try {
      context_.audit.record_denial("principal " + principal + " client " + request_.client,
                                   principal, audit_tenant(), route_ ? route_->action : "auth",
                                   audit_target(), reason);
    } catch (const store::StorageUnavailable& full) {
      log_storage_failure(full);  // the caller is refused all the same
    }
  }

  // A tenant's token is filed in its own tenant's trail, whatever tenant its request names: a
  // probe of another tenant's paths is the prober's record, never the victim's.
  std::string audit_tenant() const {
    if (!principal_.tenant_id.empty()) return principal_.tenant_name;
    if (tenant_) return tenant_->name;
    if (params_.contains("tenant")) return params_.at("tenant").substr(0, 64);
    return "";
  }

  std::string audit_target() const {
    std::string target(request_.target.substr(0, request_.target.find('?')));
    return target.substr(0, 300);
  }

  void record(const std::string& principal, const std::string& tenant, const std::string& action,
              audit::Decision decision, const std::string& reason) {
    context_.audit.record(principal, tenant, action, audit_target(), decision, reason);
  }

  void allow(const std::string& reason, const std::string& target = {}) {
    context_.audit.record(principal_.token_id, audit_tenant(), route_->action,
                          target.empty() ? audit_target() : target, audit::Decision::allow, reason);
  }

  // ---- bodies and queries

  json body(bool required = true) {
    if (request_.body.empty() && !required) return json::object();
    if (!is_json_media(request_.content_type)) {
      throw Answer{
          problem(415, "unsupported-media-type", "The body must be JSON",
                  "Content-Type is \"" + request_.content_type + "\", not application/json",
                  "send the body with Content-Type: application/json")};
    }
    json parsed;
    try {
      parsed = parse_untrusted_json(request_.body);
    } catch (const json::parse_error& error) {
      throw InvalidRequest("body", "the body is not valid JSON: " +
                                       describe_json_syntax_error(error, request_.body));
    }
    if (!parsed.is_object()) throw InvalidRequest("body", "the body must be a JSON object");
    return parsed;
  }

  static void only_members(const json& body, std::initializer_list<std::string_view> allowed) {
    for (const auto& [key, value] : body.items()) {
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        std::string list;
        for (auto name : allowed) list += (list.empty() ? "" : ", ") + std::string(name);
        throw InvalidRequest(key, "unknown field \"" + key + "\"; the fields are " + list);
      }
    }
  }

  std::map<std::string, std::string> query(std::initializer_list<std::string_view> allowed) {
    std::map<std::string, std::string> values;
    std::string_view rest = query_text_;
    while (!rest.empty()) {
      size_t amp = rest.find('&');
      std::string_view pair = rest.substr(0, amp);
      rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
      if (pair.empty()) continue;
      size_t eq = pair.find('=');
      auto key = percent_decode(pair.substr(0, eq), true);
      auto value = percent_decode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
      if (!key || !value)
        throw InvalidRequest("query", "the query string has a malformed %-escape");
      if (std::find(allowed.begin(), allowed.end(), *key) == allowed.end()) {
        std::string list;
        for (auto name : allowed) list += (list.empty() ? "" : ", ") + std::string(name);
        throw InvalidRequest(
            "query." + key->substr(0, 64),
            "unknown query parameter \"" + key->substr(0, 64) + "\"; the parameters are " + list);
      }
      values[*key] = *value;
    }
    return values;
  }

  int64_t version_param() { return registry::parse_version_number(params_.at("version")); }

  registry::Actor actor() const { return {principal_.token_id, principal_.subject}; }

  // ---- tenants and tokens

  Response create_tenant() {
    json request = body();
    only_members(request, {"name"});
    if (!request.contains("name") || !request["name"].is_string()) {
      throw InvalidRequest("name", "\"name\" must be a string: the new tenant's name");
    }
    std::string name = request["name"];
    registry::check_name("tenant name", "name", name);
    store::Tenant tenant;
    try {
      context_.store.atomically([&] {
        tenant = context_.store.create_tenant(name, store::now_ms());
        tenant_ = tenant;
        allow("created tenant " + tenant.id, "/v1/tenants/" + name);
      });
    } catch (const store::Conflict&) {
      throw Answer{problem(409, "conflict", "The tenant exists",
                           "a tenant named \"" + name + "\" exists already",
                           "choose another name, or use the existing tenant")};
    }
    return json_response(201, tenant_json(tenant));
  }

  Response list_tenants() {
    json tenants = json::array();
    if (principal_.tenant_id.empty()) {
      for (const auto& tenant : context_.store.list_tenants())
        tenants.push_back(tenant_json(tenant));
    } else if (auto own = context_.store.find_tenant(principal_.tenant_id)) {
      tenants.push_back(tenant_json(*own));
    }
    return json_response(200, {{"tenants", tenants}});
  }

  Response create_token() {
    json request = body();
    only_members(request, {"role", "expires_in_s", "subject"});
    if (!request.contains("role") || !request["role"].is_string()) {
      throw InvalidRequest("role", std::string("\"role\" must be a string: ") + auth::kRoleNames);
    }
    auto role = auth::parse_role(request["role"].get<std::string>());
    if (!role) {
      throw InvalidRequest(
          "role", "unknown role " + request["role"].dump() + "; the roles are " + auth::kRoleNames);
    }
    if (tenant_ && *role == Role::admin) {
      throw InvalidRequest("role",
                           "admin tokens belong to no tenant; create them with POST /v1/tokens");
    }
    if (!tenant_ && *role != Role::admin) {
      throw InvalidRequest(
          "role",
          "a " + std::string(auth::to_string(*role)) +
              " token belongs to a tenant; create it with POST /v1/tenants/{tenant}/tokens");
    }
    std::optional<int64_t> expires_at;
    int64_t now = store::now_ms();
    if (request.contains("expires_in_s") && !request["expires_in_s"].is_null()) {
      const auto& seconds = request["expires_in_s"];
      constexpr int64_t kTenYears = 10ll * 366 * 24 * 3600;
      if (!seconds.is_number_integer() || seconds.get<int64_t>() < 1 ||
          seconds.get<int64_t>() > kTenYears) {
        throw InvalidRequest("expires_in_s",
                             "\"expires_in_s\" must be a whole number of seconds from 1 to " +
                                 std::to_string(kTenYears) +
                                 ", or absent for a token that does not expire");
      }
      expires_at = now + seconds.get<int64_t>() * 1000;
    }
    std::string subject;
    if (request.contains("subject")) {
      if (!request["subject"].is_string() || request["subject"].get<std::string>().size() > 200) {
        throw InvalidRequest(
            "subject",
            "\"subject\" must be a string of at most 200 bytes naming who holds the token");
      }
      subject = request["subject"];
    }
    std::string secret = auth::new_secret();
    store::Token token;
    context_.store.atomically([&] {
      token = context_.store.insert_token({.tenant_id = tenant_ ? tenant_->id : "",
                                           .role = std::string(auth::to_string(*role)),
                                           .secret_hash = auth::hash_secret(secret),
                                           .created_at = now,
                                           .expires_at = expires_at,
                                           .created_by = principal_.token_id,
                                           .subject = subject});
      allow("created token " + token.id + " with role " + token.role +
                (subject.empty() ? "" : " for \"" + subject + "\"") +
                (expires_at ? ", expiring " + iso8601(*expires_at) : ", not expiring"),
            audit_target() + "/" + token.id);
    });
    return json_response(201, {{"id", token.id},
                               {"token", secret},
                               {"role", token.role},
                               {"tenant", tenant_ ? json(tenant_->name) : json()},
                               {"subject", subject},
                               {"expires_at", expires_at ? json(iso8601(*expires_at)) : json()}});
  }

  // Never a secret nor its hash: what an admin needs to tell tokens apart and find idle ones.
  Response list_tokens() {
    auto optional_time = [](std::optional<int64_t> ms) { return ms ? json(iso8601(*ms)) : json(); };
    json tokens = json::array();
    std::map<std::string, json> subjects;
    for (const auto& token : context_.store.list_tokens(tenant_ ? tenant_->id : "")) {
      json listed = {{"id", token.id},
                     {"subject", token.subject},
                     {"role", token.role},
                     {"created_by", token.created_by},
                     {"created_at", iso8601(token.created_at)},
                     {"expires_at", optional_time(token.expires_at)},
                     {"revoked_at", optional_time(token.revoked_at)},
                     {"last_used_at", optional_time(token.last_used_at)}};
      add_subjects(listed, {"created_by"}, context_.store, subjects);
      tokens.push_back(std::move(listed));
    }
    return json_response(200,
                         {{"tenant", tenant_ ? json(tenant_->name) : json()}, {"tokens", tokens}});
  }

  Response revoke_token() {
    const std::string& id = params_.at("token");
    auto token = context_.store.find_token(id);
    std::string owner = tenant_ ? tenant_->id : "";
    if (!token || token->tenant_id != owner) {
      throw Answer{problem(404, "not-found", "No such token",
                           "no token " + id.substr(0, 64) + " belongs to " +
                               (tenant_ ? "tenant \"" + tenant_->name + "\"" : "the admins"),
                           "token ids are those returned when the token was created")};
    }
    store::Token revoked;
    context_.store.atomically([&] {
      revoked = context_.store.revoke_token(id, store::now_ms());
      if (!token->revoked_at) {
        allow("revoked token " + id +
              (token->subject.empty() ? "" : " of \"" + token->subject + "\"") + " (role " +
              token->role + ")");
      }
    });
    // After the commit: a lookup racing this one cannot put the token back (auth.h).
    if (context_.tokens) context_.tokens->forget_token(id);
    return json_response(200, {{"id", revoked.id}, {"revoked_at", iso8601(*revoked.revoked_at)}});
  }

  // ---- scripts

  Response list_scripts() {
    json scripts = json::array();
    for (const auto& script : context_.store.list_scripts(tenant_->id)) {
      scripts.push_back({{"name", script.name}, {"latest_version", script.latest_version}});
    }
    return json_response(200, {{"tenant", tenant_->name}, {"scripts", scripts}});
  }

  Response list_versions() {
    const std::string& script = params_.at("script");
    context_.registry.require_script(*tenant_, script);
    json versions = json::array();
    std::map<std::string, json> subjects;
    for (const auto& version : context_.store.list_versions(tenant_->id, script)) {
      versions.push_back(version_json(version, tenant_->name, true));
      add_subjects(versions.back(), {"published_by", "approved_by"}, context_.store, subjects);
    }
    return json_response(200,
                         {{"tenant", tenant_->name}, {"script", script}, {"versions", versions}});
  }

  Response read_version() {
    auto version = context_.registry.version(*tenant_, params_.at("script"), version_param());
    json answer = version_json(version, tenant_->name, true);
    std::map<std::string, json> subjects;
    add_subjects(answer, {"published_by", "approved_by"}, context_.store, subjects);
    return json_response(200, answer);
  }

  static std::optional<registry::Signature> signature_member(const json& request) {
    if (!request.contains("signature")) {
      if (request.contains("key_id")) {
        throw InvalidRequest("key_id",
                             "\"key_id\" names the key of a signature; send "
                             "\"signature\" with it, or leave both out");
      }
      return std::nullopt;
    }
    registry::Signature signature;
    if (!request["signature"].is_string() || request["signature"].get<std::string>().size() > 200) {
      throw InvalidRequest("signature",
                           "\"signature\" must be a string: the standard base64 of a 64-byte "
                           "Ed25519 signature over the source's raw SHA-256");
    }
    signature.base64 = request["signature"];
    if (request.contains("key_id")) {
      if (!request["key_id"].is_string() || request["key_id"].get<std::string>().size() > 200) {
        throw InvalidRequest("key_id",
                             "\"key_id\" must be a string: the signer's public key in standard "
                             "base64, as the policy lists it");
      }
      signature.key_id = request["key_id"].get<std::string>();
    }
    return signature;
  }

  Response publish() {
    json request = body();
    only_members(request, {"source", "manifest", "signature", "key_id"});
    if (!request.contains("source") || !request["source"].is_string()) {
      throw InvalidRequest("source", "\"source\" must be a string holding the script");
    }
    if (!request.contains("manifest")) {
      throw registry::InvalidInput(
          "manifest", "the manifest is missing",
          "send \"manifest\": {\"runtime\": \"lua5.4\", \"capabilities\": [], "
          "\"deterministic\": false, \"description\": \"...\"}");
    }
    auto signature = signature_member(request);
    // One snapshot for the whole request: every check below is decided under one version.
    auto policy = policy_snapshot();
    std::string under = "policy version " + std::to_string(policy->version);
    const std::string& script = params_.at("script");
    // Publishing runs the version's top level in one of the tenant's workers: it has a rate of its
    // own, and takes a place under the tenant's concurrency and CPU quotas like any run, its CPU
    // charged to the tenant.
    const policy::TenantPolicy tenant_policy = policy->policy.for_tenant(tenant_->name);
    admit_publish(tenant_policy.quotas, policy->version);
    auto admitted = context_.invoker->admit(tenant_->name, tenant_policy.quotas, caller(), "",
                                            sched::Admission::Rate::own);
    if (auto* refusal = std::get_if<invoke::Refusal>(&admitted)) {
      refusal->policy_version = policy->version;
      throw Answer{to_response(*refusal).written()};
    }
    std::optional<sched::Ticket> ticket =
        std::move(std::get<std::optional<sched::Ticket>>(admitted));
    auto charge_check = [&](const InvocationResult& check) {
      if (ticket) ticket->report_cpu(check.stats.cpu_ms, std::chrono::steady_clock::now());
    };
    store::Published published;
    try {
      published = context_.registry.publish(
          *tenant_, script, request["source"].get<std::string>(), request["manifest"], signature,
          policy->policy, actor(),
          [&](const store::Published& made, const registry::PublishDecisions& decisions) {
            std::string number = std::to_string(made.version.version);
            std::string target = audit_target() + "/" + number;
            allow("published version " + number + " (sha256 " + made.version.sha256 +
                      (decisions.signed_by ? ", signed by key " + *decisions.signed_by : "") +
                      ", " + under + ")",
                  target);
            if (decisions.approved_by_rule) {
              context_.audit.record(registry::kApprovedByPolicy, tenant_->name, "version.approve",
                                    target, audit::Decision::allow,
                                    "version " + number + " approved as it was published: " +
                                        *decisions.approved_by_rule + " is false (" + under + ")");
            }
          },
          charge_check);
    } catch (const registry::Refusal& refusal) {
      // Refusals carry the rule; the problem also names the policy version they were decided under.
      if (refusal.status != 403 && refusal.status != 422 && refusal.status != 429) throw;
      std::string detail = std::string(refusal.what()) + " (" + under + ")";
      if (refusal.status == 403 || refusal.status == 422) deny(detail);
      json extra = refusal.extra;
      extra["policy_version"] = policy->version;
      throw Answer{
          problem(refusal.status, refusal.slug, refusal.title, detail, refusal.hint, "", extra)};
    }
    json answer = version_json(published.version, tenant_->name, false);
    answer["created"] = published.created;
    Response response = json_response(published.created ? 201 : 200, answer);
    response.headers.emplace_back("Location",
                                  audit_target() + "/" + std::to_string(published.version.version));
    return response;
  }

  Response change_state() {
    const std::string& script = params_.at("script");
    int64_t number = version_param();
    const std::string& action = route_->action;
    store::ScriptVersion version;
    auto record = [&](const store::ScriptVersion& changed) {
      allow("version " + std::to_string(number) + " is now " +
            std::string(store::to_string(changed.state)));
    };
    if (action == "version.approve") {
      version = context_.registry.approve(*tenant_, script, number, policy_snapshot()->policy,
                                          actor(), record);
    } else if (action == "version.deprecate") {
      version = context_.registry.deprecate(*tenant_, script, number, actor(), record);
    } else {
      version = context_.registry.disable(*tenant_, script, number, actor(), record);
    }
    return json_response(200, version_json(version, tenant_->name, false));
  }

  Response list_aliases() {
    const std::string& script = params_.at("script");
    context_.registry.require_script(*tenant_, script);
    json aliases = json::array();
    std::map<std::string, json> subjects;
    for (const auto& alias : context_.store.list_aliases(tenant_->id, script)) {
      aliases.push_back(alias_json(alias));
      add_subjects(aliases.back(), {"updated_by"}, context_.store, subjects);
    }
    return json_response(200,
                         {{"tenant", tenant_->name}, {"script", script}, {"aliases", aliases}});
  }

  Response export_tenant() {
    json exported = export_tenant_data(*tenant_,
                                       {.store = context_.store,
                                        .audit = context_.audit,
                                        .kv = context_.broker ? &context_.broker->kv() : nullptr},
                                       store::now_ms());
    allow("exported the data of tenant \"" + tenant_->name + "\"");
    return json_response(200, exported);
  }

  Response read_usage() {
    if (!context_.usage) {
      return problem(503, "unavailable", "Usage is not kept by this server",
                     "this corrald was started without a usage ledger",
                     "report this to the operator of corral");
    }
    UsageQuery window = parse_usage_query(query({"from", "to", "by"}), store::now_ms());
    context_.usage->flush();  // so that the answer includes every run before it
    return json_response(200, usage_report(context_.store, *tenant_, window));
  }

  Response erase_tenant_data() {
    if (context_.runs) context_.runs->flush();  // runs still queued are erased too
    store::Store::TenantDataErased erased;
    context_.store.atomically([&] {
      erased = context_.store.erase_tenant_data(tenant_->id);
      allow("erased the data of tenant \"" + tenant_->name +
            "\": " + std::to_string(erased.stored_runs) + " stored runs, " +
            std::to_string(erased.jobs) + " jobs, " + std::to_string(erased.webhook_deliveries) +
            " webhook deliveries, " + std::to_string(erased.kv_entries) + " kv entries, " +
            std::to_string(erased.events) + " events");
    });
    size_t cached = context_.cache ? context_.cache->forget_tenant(tenant_->id) : 0;
    return json_response(200, {{"tenant", tenant_->name},
                               {"erased",
                                {{"stored_runs", erased.stored_runs},
                                 {"jobs", erased.jobs},
                                 {"webhook_deliveries", erased.webhook_deliveries},
                                 {"kv_entries", erased.kv_entries},
                                 {"events", erased.events},
                                 {"cached_results", cached}}}});
  }

  Response alias_history() {
    const std::string& script = params_.at("script");
    const std::string& name = params_.at("alias");
    int64_t limit = integer_query(query({"limit"}), "limit", 1, 1000).value_or(100);
    context_.registry.resolve_alias(*tenant_, script, name);  // 404 naming what is missing
    json changes = json::array();
    std::map<std::string, json> subjects;
    for (const auto& change : context_.store.alias_history(tenant_->id, script, name, limit)) {
      changes.push_back(alias_change_json(change));
      add_subjects(changes.back(), {"changed_by"}, context_.store, subjects);
    }
    return json_response(
        200,
        {{"tenant", tenant_->name}, {"script", script}, {"alias", name}, {"history", changes}});
  }

  Response set_alias() {
    json request = body();
    only_members(request, {"version", "auto_rollback", "canary"});
    if (!request.contains("version") || !request["version"].is_number_integer() ||
        request["version"].get<int64_t>() < 1) {
      throw InvalidRequest("version",
                           "\"version\" must be the number of an approved version (1, 2, 3…)");
    }
    if (request.contains("auto_rollback") && !request["auto_rollback"].is_boolean()) {
      throw InvalidRequest("auto_rollback",
                           "\"auto_rollback\" must be true (move the alias to the previous "
                           "approved version when this one is quarantined) or false");
    }
    bool auto_rollback = request.value("auto_rollback", false);
    std::optional<store::Canary> canary;
    if (request.contains("canary") && !request["canary"].is_null()) {
      const json& given = request["canary"];
      only_members(given, {"version", "weight"});
      if (!given.contains("version") || !given["version"].is_number_integer() ||
          !given.contains("weight") || !given["weight"].is_number_integer()) {
        throw InvalidRequest("canary",
                             "\"canary\" must be {\"version\": N, \"weight\": P}: the approved "
                             "version that takes P percent (1 to 99) of the alias's invocations");
      }
      canary = store::Canary{given["version"].get<int64_t>(), given["weight"].get<int64_t>()};
    }
    const std::string& script = params_.at("script");
    const std::string& name = params_.at("alias");
    store::Alias alias = context_.registry.set_alias(
        *tenant_, script, name, request["version"].get<int64_t>(), actor(),
        [&](const store::Alias& changed, std::optional<int64_t> previous) {
          allow("alias \"" + name + "\" " +
                (previous ? "moved from version " + std::to_string(*previous) + " to "
                          : "created at version ") +
                std::to_string(changed.version) +
                (auto_rollback ? ", with automatic rollback" : "") +
                (canary ? ", with version " + std::to_string(canary->version) + " as a " +
                              std::to_string(canary->weight) + " % canary"
                        : ""));
        },
        auto_rollback, canary);
    return json_response(200, alias_json(alias));
  }

  // ---- running

  // The invoker (src/invoke/invoker.h) does the work of a run; what follows writes its results
  // out for this request.

  // The policy in force now: taken once per invocation, which then runs under it to the end.
  std::shared_ptr<const policy::Snapshot> policy_snapshot() const {
    return context_.invoker->policy_snapshot();
  }

  // Who this request's runs are for: its token is named in the quota entries they audit, and an
  // invoker's token runs only approved versions while the policy requires approval.
  invoke::Caller caller() const {
    return {.principal = principal_.token_id,
            .audit_target = audit_target(),
            .may_run_pending = principal_.role != Role::invoker,
            .by_quota = true};
  }

  // A refusal as the answer; a version refused for want of approval is this principal's denial.
  JsonResponse refused(const invoke::Refusal& refusal) {
    if (refusal.reason == invoke::Refusal::Reason::not_approved) deny(refusal.detail);
    return to_response(refusal);
  }

  // A prepared run, run and finished, as the answer: the pipeline of every run this API makes.
  JsonResponse run_prepared(invoke::Prepared& prepared) {
    if (auto* refusal = std::get_if<invoke::Refusal>(&prepared)) return refused(*refusal);
    auto& run = std::get<invoke::Run>(prepared);
    InvocationResult result = run.cached ? *run.cached : context_.executor.run(run.request);
    return to_response(context_.invoker->finish(run, std::move(result)));
  }

  // The tenant's publish rate (quotas.publishes_per_minute): over it, the 429 answer, audited as a
  // repeated denial (one entry per tenant and minute, with a count).
  void admit_publish(const policy::Quotas& quotas, int64_t policy_version) {
    if (!context_.publishes) return;
    const auto& quota = quotas.publishes_per_minute;
    auto wait =
        context_.publishes->take(tenant_->name, quota.value, std::chrono::steady_clock::now());
    if (!wait) return;
    context_.metrics.record_quota_rejection("publishes_per_minute");
    context_.quota_events->note(
        tenant_->name + "\npublishes_per_minute",
        {{"tenant", tenant_->name}, {"quota", "publishes_per_minute"}, {"rule", quota.source}});
    std::string detail =
        "tenant \"" + tenant_->name +
        "\" has used its publishes for now: " + std::to_string(quota.value) + " a minute, " +
        std::to_string(static_cast<int64_t>(sched::RateBuckets::burst_of(quota.value))) +
        " at once (" + quota.source + ")";
    deny(detail);
    std::string retry = std::to_string(*wait);
    Response response = problem(429, "quota-exceeded", "A quota is exhausted", detail,
                                "publish again in " + retry +
                                    " s (Retry-After); to publish more often, ask the operator "
                                    "to raise " +
                                    quota.source,
                                "",
                                {{"tenant", tenant_->name},
                                 {"quota", "publishes_per_minute"},
                                 {"rule", quota.source},
                                 {"retry_after", *wait},
                                 {"policy_version", policy_version}});
    response.headers.emplace_back("Retry-After", retry);
    throw Answer{std::move(response)};
  }

  Response run_playground() {
    std::string invocation_id = new_invocation_id();
    if (!is_json_media(request_.content_type)) {
      Response response =
          problem(415, "unsupported-media-type", "The body must be JSON",
                  "Content-Type is \"" + request_.content_type + "\", not application/json",
                  "send the body with Content-Type: application/json", invocation_id);
      response.invocation_id = invocation_id;
      return response;
    }
    InvocationRequest invocation;
    try {
      invocation = parse_run_request(request_.body, context_.limits, invocation_id);
    } catch (const InvalidRequest& error) {
      return invalid_run(invalid_request(error, invocation_id), invocation_id);
    } catch (const std::invalid_argument& error) {
      return invalid_run(invalid_request(InvalidRequest("body", error.what()), invocation_id),
                         invocation_id);
    }
    // The playground: the caller's own tenant's workers, or a shared one for admins.
    invocation.tenant = principal_.tenant_id.empty() ? kPlaygroundTenant : principal_.tenant_id;
    // Quotas follow the same split: the tenant's own, or those of a tenant named "playground"
    // (the defaults, unless the policy names it) shared by every admin.
    std::string quota_tenant =
        principal_.tenant_id.empty() ? std::string(kPlaygroundTenant) : principal_.tenant_name;
    charged_tenant_ = quota_tenant;
    invoke::Prepared prepared = context_.invoker->prepare(invoke::PlaygroundCall{
        .request = std::move(invocation), .quota_tenant = quota_tenant, .caller = caller()});
    return run_prepared(prepared).written();
  }

  static Response invalid_run(Response response, const std::string& invocation_id) {
    response.invocation_id = invocation_id;
    response.outcome = "invalid";
    return response;
  }

  Response invoke() {
    auto options = query({"alias", "version"});
    const std::string& script = params_.at("script");
    json extra = {{"script", script}};
    store::ScriptVersion version = choose_version(options, script, extra);
    json request = body(false);
    only_members(request, {"input", "inputs", "limits"});
    json limits = request.contains("limits") ? request["limits"] : json::object();
    if (request.contains("inputs")) {
      if (request.contains("input"))
        throw InvalidRequest("inputs", "give either \"input\" or \"inputs\" (a batch), not both");
      return invoke_batch(version, request["inputs"], limits, extra);
    }
    return run_version_now(version, request.contains("input") ? request["input"] : json(), limits,
                           extra)
        .written();
  }

  // The version an invocation names: ?version=N, or an alias (live by default) and, when the
  // alias has a canary, the canary version for its weight's share of invocations. Adds alias,
  // version and canary to `extra`.
  store::ScriptVersion choose_version(std::map<std::string, std::string>& options,
                                      const std::string& script, json& extra) {
    if (options.contains("alias") && options.contains("version")) {
      throw InvalidRequest("query", "give either alias= or version=, not both");
    }
    store::ScriptVersion version;
    if (options.contains("version")) {
      version = context_.registry.version(*tenant_, script,
                                          registry::parse_version_number(options["version"]));
    } else {
      std::string alias = options.contains("alias") ? options["alias"] : "live";
      store::Alias resolved;
      version = context_.registry.resolve_alias(*tenant_, script, alias, &resolved);
      extra["alias"] = alias;
      chosen_alias_ = alias;
      if (resolved.rolled_back_from > 0) extra["rolled_back_from"] = resolved.rolled_back_from;
      if (resolved.canary_weight > 0) version = split_to_canary(resolved, version, extra);
    }
    extra["version"] = version.version;
    chosen_version_ = version.version;
    return version;
  }

  // An alias with a canary: the canary version runs for canary_weight percent of invocations,
  // unless its circuit breaker has it quarantined (then the alias's own version runs, so that a
  // failing canary costs only its probes). "canary" in the result says which side ran.
  store::ScriptVersion split_to_canary(const store::Alias& alias, store::ScriptVersion primary,
                                       json& extra) {
    thread_local std::mt19937_64 random{std::random_device{}()};
    bool to_canary = static_cast<int64_t>(random() % 100) < alias.canary_weight;
    if (to_canary && context_.breakers &&
        context_.breakers->state({tenant_->id, alias.script, alias.canary_version}) !=
            sched::BreakerState::closed) {
      to_canary = false;
      extra["canary_skipped"] = "quarantined";
    }
    extra["canary"] = to_canary;
    context_.metrics.record_canary_route(to_canary);
    if (!to_canary) return primary;
    return context_.registry.version(*tenant_, alias.script, alias.canary_version);
  }

  // Refuses a version that may not run now for this principal: disabled (410), or pending review
  // and invoked by an invoker while the policy requires approval (403).
  void require_runnable(const store::ScriptVersion& version,
                        const policy::TenantPolicy& tenant_policy, const json& extra) {
    if (auto refusal = context_.invoker->check_runnable(version, tenant_policy, caller(), extra))
      throw Answer{refused(*refusal).written()};
  }

  // A chosen version run for this request: the invoker prepares, the executor runs, the invoker
  // finishes, and the result is written out here.
  JsonResponse run_version_now(const store::ScriptVersion& version, const json& input,
                               const json& limits_request, const json& extra) {
    charged_tenant_ = tenant_->name;
    invoke::Prepared prepared =
        context_.invoker->prepare(invoke::Call{.tenant = *tenant_,
                                               .version = version,
                                               .input = input,
                                               .limits = limits_request,
                                               .alias = extra.value("alias", ""),
                                               .labels = extra,
                                               .invocation_id = "",
                                               .caller = caller()});
    return run_prepared(prepared);
  }

  // A batch: the version once per input, one after the other (so on the tenant's warm worker),
  // each with its own outcome; an input refused by a quota or failing does not stop the others.
  Response invoke_batch(const store::ScriptVersion& version, const json& inputs,
                        const json& limits_request, const json& extra) {
    auto tenant_policy = policy_snapshot()->policy.for_tenant(tenant_->name);
    const auto& most = tenant_policy.limits.batch_inputs;
    if (!inputs.is_array() || inputs.empty()) {
      throw InvalidRequest("inputs", "\"inputs\" must be a non-empty array of inputs");
    }
    if (static_cast<int64_t>(inputs.size()) > most.value) {
      throw InvalidRequest("inputs", "the batch has " + std::to_string(inputs.size()) +
                                         " inputs, over the policy's batch_inputs limit of " +
                                         std::to_string(most.value) + " (" + most.source +
                                         "); split it into smaller batches");
    }
    require_runnable(version, tenant_policy, extra);
    json results = json::array();
    std::map<std::string, int64_t> outcomes;
    for (size_t i = 0; i < inputs.size(); ++i) {
      JsonResponse item;
      try {
        item = run_version_now(version, inputs[i], limits_request, extra);
      } catch (const InvalidRequest& error) {
        item = problem_json(400, "invalid", "The input is invalid",
                            std::string(error.what()) + " (at inputs[" + std::to_string(i) + "])",
                            "correct that input; the others ran");
        item.outcome = "invalid";
      }
      json body = std::move(item.body);
      if (!body.is_object()) body = json::object();
      body["status"] = item.status;
      for (const auto& [name, value] : item.headers)
        if (name == "Retry-After" || name == "Corral-Cache") body[name] = value;
      ++outcomes[item.outcome.empty() ? "invalid" : item.outcome];
      results.push_back(std::move(body));
    }
    json answer = extra;
    answer["results"] = std::move(results);
    answer["outcomes"] = outcomes;
    return json_response(200, answer);
  }

  // ---- stored runs and replay

  json run_json(const store::StoredRun& run) const {
    json result = json::parse(run.result, nullptr, false);
    json input = run.input ? json::parse(*run.input, nullptr, false) : json();
    return {{"id", run.id},
            {"script", run.script},
            {"version", run.version},
            {"time", iso8601(run.time_ms)},
            {"outcome", run.outcome},
            {"input_stored", run.input.has_value()},
            {"input", input.is_discarded() ? json(*run.input) : input},
            {"result", result.is_discarded() ? json(run.result) : result}};
  }

  Response list_runs() {
    auto options = query({"limit"});
    int64_t limit = integer_query(options, "limit", 1, 1000).value_or(20);
    const std::string& script = params_.at("script");
    context_.registry.require_script(*tenant_, script);
    if (context_.runs) context_.runs->flush();
    json list = json::array();
    for (const auto& run : context_.store.list_runs(tenant_->id, script, limit))
      list.push_back(run_json(run));
    return json_response(200, {{"script", script}, {"runs", list}});
  }

  store::StoredRun stored_run(const std::string& script, const std::string& id) {
    if (context_.runs) context_.runs->flush();
    auto run = context_.store.find_run(tenant_->id, script, id);
    if (!run) {
      throw Answer{
          problem(404, "not-found", "No such stored run",
                  "script \"" + script + "\" has no stored run \"" + id.substr(0, 80) + "\"",
                  "GET …/scripts/" + script +
                      "/runs lists the stored ones; only the last runs.keep runs of a "
                      "script are kept (docs/policy.md)")};
    }
    return *run;
  }

  Response read_run() {
    return json_response(200, run_json(stored_run(params_.at("script"), params_.at("run"))));
  }

  // Runs a stored run's input against another version (or the same one) and answers the new
  // result with "replay_of": the stored run, and whether the output is the same.
  Response replay() {
    auto options = query({"run"});
    const std::string& script = params_.at("script");
    if (!options.contains("run")) {
      throw InvalidRequest("query.run", "name the stored run to replay: ?run=<its id>");
    }
    store::StoredRun original = stored_run(script, options["run"]);
    if (!original.input) {
      throw Answer{problem(
          409, "input-not-stored", "The run's input was not stored",
          "stored run \"" + original.id + "\" of script \"" + script +
              "\" was kept without its input, so it cannot be replayed",
          "have the operator set runs.inputs: true for this tenant (docs/policy.md); runs stored "
          "from then on can be replayed")};
    }
    json input = json::parse(*original.input, nullptr, false);
    store::ScriptVersion version = context_.registry.version(
        *tenant_, script, registry::parse_version_number(params_.at("version")));
    json before = json::parse(original.result, nullptr, false);
    json replay_of = {
        {"run", original.id}, {"version", original.version}, {"outcome", original.outcome}};
    json extra = {{"script", script}, {"version", version.version}};
    JsonResponse response = run_version_now(version, input, json::object(), extra);
    json& after = response.body;
    if (after.is_object()) {
      replay_of["same_outcome"] = after.value("outcome", "") == original.outcome;
      replay_of["same_output"] = before.is_object() && before.contains("output") &&
                                 after.contains("output") && before["output"] == after["output"];
      after["replay_of"] = replay_of;
    }
    return response.written();
  }

 private:
  // ---- audit

  Response read_audit() {
    auto options = query({"tenant", "action", "since", "until", "after", "limit"});
    audit::Filter filter;
    if (options.contains("tenant")) filter.tenant = options["tenant"];
    if (!principal_.tenant_id.empty()) {
      if (filter.tenant && *filter.tenant != principal_.tenant_name) {
        deny("audit of tenant \"" + filter.tenant->substr(0, 64) + "\" is not the token's tenant");
        throw Answer{problem(
            404, "not-found", "No such tenant",
            "no tenant named \"" + filter.tenant->substr(0, 64) + "\" is visible to this token",
            "an auditor reads its own tenant's entries; leave out tenant=")};
      }
      filter.tenant = principal_.tenant_name;
    }
    if (options.contains("action")) filter.action = options["action"];
    for (auto [key, member] : {std::pair{"since", &audit::Filter::since_ms},
                               std::pair{"until", &audit::Filter::until_ms}}) {
      if (!options.contains(key)) continue;
      auto time = parse_time(options[key]);
      if (!time) {
        throw InvalidRequest(
            std::string("query.") + key,
            std::string(key) +
                " must be unix milliseconds or an RFC 3339 UTC time such as 2026-11-23T12:00:00Z");
      }
      filter.*member = *time;
    }
    auto integer = [&](const char* key, int64_t low, int64_t high) -> std::optional<int64_t> {
      if (!options.contains(key)) return std::nullopt;
      int64_t value = 0;
      const std::string& text = options[key];
      auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (error != std::errc() || end != text.data() + text.size() || value < low || value > high) {
        throw InvalidRequest(std::string("query.") + key,
                             std::string(key) + " must be a whole number from " +
                                 std::to_string(low) + " to " + std::to_string(high));
      }
      return value;
    };
    filter.after_seq = integer("after", 0, INT64_MAX);
    filter.limit = integer("limit", 1, 1000).value_or(100);
    auto entries = context_.audit.query(filter);
    json list = json::array();
    std::map<std::string, json> subjects;
    for (const auto& entry : entries) {
      list.push_back(audit_json(entry));
      add_subjects(list.back(), {"principal"}, context_.store, subjects);
    }
    json answer = {{"entries", list}};
    answer["next_after"] =
        static_cast<int64_t>(entries.size()) == filter.limit ? json(entries.back().seq) : json();
    return json_response(200, answer);
  }

  Response verify_audit() {
    audit::VerifyReport report = context_.audit.verify();
    json answer = {{"ok", report.ok}, {"entries_checked", report.entries_checked}};
    answer["first_bad_seq"] = report.first_bad_seq ? json(*report.first_bad_seq) : json();
    answer["problem"] = report.problem;
    if (!report.ok) {
      answer["hint"] =
          "the audit trail was changed outside corral from this entry on; restore the database "
          "from a "
          "backup and investigate who had access to the file";
    }
    return json_response(200, answer);
  }

  // ---- policy

  policy::PolicyService& policy_service() {
    if (!context_.policy) {
      throw Answer{problem(503, "unavailable", "This server has no policy service",
                           "the API was set up without a policy service, so " + route_->method +
                               " " + route_->pattern + " cannot be answered",
                           "run the routes through corrald, which always has one")};
    }
    return *context_.policy;
  }

  // A whole number from the query, or nullopt when the key is absent.
  std::optional<int64_t> integer_query(const std::map<std::string, std::string>& options,
                                       const std::string& key, int64_t low, int64_t high) {
    auto found = options.find(key);
    if (found == options.end()) return std::nullopt;
    int64_t value = 0;
    const std::string& text = found->second;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size() || value < low || value > high) {
      throw InvalidRequest("query." + key, key + " must be a whole number from " +
                                               std::to_string(low) + " to " + std::to_string(high));
    }
    return value;
  }

  Response policy_route(const std::string& action) {
    if (action == "policy.read") return read_policy();
    if (action == "policy.update") return update_policy();
    if (action == "policy.versions") return list_policy_versions();
    if (action == "policy.rollback") return rollback_policy();
    return explain_policy();
  }

  Response read_policy() {
    auto options = query({"version"});
    auto number = integer_query(options, "version", 0, INT64_MAX);
    json answer;
    std::optional<policy::Snapshot> snapshot;
    if (number) snapshot = policy_service().version(*number);
    if (!number) {
      answer = snapshot_json(*policy_service().current());
    } else if (!snapshot) {
      throw Answer{problem(404, "not-found", "No such policy version",
                           "there is no policy version " + std::to_string(*number) +
                               "; the newest is " +
                               std::to_string(policy_service().current()->version),
                           "GET /v1/policy/versions lists the stored versions; version 0 is the "
                           "built-in safe default")};
    } else {
      answer = snapshot_json(*snapshot);
    }
    std::map<std::string, json> subjects;
    add_subjects(answer, {"created_by"}, context_.store, subjects);
    return json_response(200, answer);
  }

  // 400 with every problem of the document; nothing was stored.
  Response invalid_policy(const policy::PolicyInvalid& invalid) {
    json problems = json::array();
    for (const auto& found : invalid.problems()) {
      problems.push_back({{"path", found.path},
                          {"line", found.line},
                          {"column", found.column},
                          {"message", found.message}});
    }
    std::string detail = "the policy document was not stored: it has " +
                         std::to_string(invalid.problems().size()) +
                         (invalid.problems().size() == 1 ? " problem" : " problems");
    if (!invalid.problems().empty()) {
      const auto& first = invalid.problems().front();
      detail += "; the first: " + (first.path.empty() ? std::string("the document") : first.path);
      if (first.line > 0) {
        detail += " (line " + std::to_string(first.line) + ", column " +
                  std::to_string(first.column) + ")";
      }
      detail += ": " + first.message;
    }
    int64_t in_force = policy_service().current()->version;
    return problem(400, "invalid-policy", "The policy document is not valid", detail,
                   "fix every entry of \"problems\" (lines and columns count from 1 in the "
                   "document you sent) and PUT the whole document again; version " +
                       std::to_string(in_force) + " stays in force meanwhile",
                   "", {{"problems", problems}, {"policy_version", in_force}});
  }

  Response accepted_policy(const policy::Accepted& accepted, std::optional<int64_t> from) {
    const policy::Snapshot& made = *accepted.snapshot;
    json event = {{"policy_version", made.version},
                  {"changed_by", principal_.token_id},
                  {"subject", principal_.subject},
                  {"changes", accepted.diff}};
    if (from) event["rolled_back_to"] = *from;
    log_event(spdlog::level::info, from ? "policy.rollback" : "policy.update",
              from ? "policy rolled back" : "policy updated", event);
    json answer = {{"version", made.version},
                   {"diff", accepted.diff},
                   {"created_by", made.created_by},
                   {"created_at", time_or_null(made.created_at)}};
    if (from) answer["rolled_back_to"] = *from;
    Response response = json_response(201, answer);
    response.headers.emplace_back("Location", "/v1/policy?version=" + std::to_string(made.version));
    return response;
  }

  Response update_policy() {
    std::string media = media_type(request_.content_type);
    std::string document;
    if (media == "application/yaml" || media == "text/yaml" || media == "application/x-yaml") {
      document = request_.body;
    } else if (media == "application/json") {
      json request = body();
      only_members(request, {"document"});
      if (!request.contains("document") || !request["document"].is_string()) {
        throw InvalidRequest("document",
                             "\"document\" must be a string holding the policy's YAML text");
      }
      document = request["document"];
    } else {
      throw Answer{problem(
          415, "unsupported-media-type", "The body must be a YAML policy document",
          "Content-Type is \"" + request_.content_type.substr(0, 100) + "\", not application/yaml",
          "send the YAML text with Content-Type: application/yaml (or text/yaml), or "
          "{\"document\": \"...\"} with Content-Type: application/json")};
    }
    try {
      return accepted_policy(policy_service().update(document, principal_.token_id), std::nullopt);
    } catch (const policy::PolicyInvalid& invalid) {
      return invalid_policy(invalid);
    }
  }

  Response list_policy_versions() {
    json versions = json::array();
    std::map<std::string, json> subjects;
    for (const auto& version : policy_service().versions()) {
      versions.push_back({{"version", version.version},
                          {"created_by", version.created_by},
                          {"created_at", time_or_null(version.created_at)}});
      add_subjects(versions.back(), {"created_by"}, context_.store, subjects);
    }
    return json_response(
        200, {{"current", policy_service().current()->version}, {"versions", versions}});
  }

  Response rollback_policy() {
    json request = body();
    only_members(request, {"version"});
    if (!request.contains("version") || !request["version"].is_number_integer() ||
        request["version"].get<int64_t>() < 0) {
      throw InvalidRequest("version",
                           "\"version\" must be the number of a stored policy version (0 for the "
                           "built-in safe default)");
    }
    int64_t to = request["version"].get<int64_t>();
    try {
      return accepted_policy(policy_service().rollback(to, principal_.token_id), to);
    } catch (const store::NotFound& missing) {
      throw Answer{problem(404, "not-found", "No such policy version", missing.what(),
                           "GET /v1/policy/versions lists the stored versions")};
    } catch (const policy::PolicyInvalid& invalid) {
      // A stored document this corrald's stricter rules refuse: say so rather than hide it.
      return invalid_policy(invalid);
    }
  }

  // Admins ask about any tenant name (the policy may name tenants not created yet); an auditor
  // only about its own tenant, which it may leave out. Another tenant answers as one that does
  // not exist, as everywhere.
  Response explain_policy() {
    auto options = query({"tenant", "action"});
    if (!options.contains("action") || options["action"].empty()) {
      throw InvalidRequest("query.action",
                           "action= is required: a capability call such as kv.get, "
                           "\"http.fetch https://api.example.com/x\" or \"emit orders.created\", "
                           "or an API action: publish, publish_unsigned, invoke_unapproved, "
                           "self_approve");
    }
    std::string tenant;
    if (options.contains("tenant")) {
      tenant = options["tenant"];
    } else if (!principal_.tenant_id.empty()) {
      tenant = principal_.tenant_name;
    } else {
      throw InvalidRequest("query.tenant", "tenant= is required: the tenant the question is about");
    }
    registry::check_name("tenant name", "query.tenant", tenant);
    if (!principal_.tenant_id.empty() && tenant != principal_.tenant_name) {
      deny("explain for tenant \"" + tenant + "\", which is not the token's tenant");
      throw Answer{problem(404, "not-found", "No such tenant",
                           "no tenant named \"" + tenant + "\" is visible to this token",
                           "your token belongs to tenant \"" + principal_.tenant_name +
                               "\"; leave out tenant= to ask about it")};
    }
    auto snapshot = policy_service().current();
    policy::Decision decision;
    try {
      decision = snapshot->policy.explain(tenant, options["action"]);
    } catch (const std::invalid_argument& error) {
      throw InvalidRequest("query.action", error.what());
    }
    return json_response(200, {{"tenant", tenant},
                               {"action", options["action"]},
                               {"allowed", decision.allowed},
                               {"rule", decision.rule},
                               {"reason", decision.reason},
                               {"policy_version", snapshot->version}});
  }

  // ---- secrets: write-only; no route ever answers with a value

  broker::SecretsService& secrets_service() {
    if (!context_.secrets) {
      throw Answer{problem(503, "unavailable", "This server has no secrets service",
                           "the API was set up without a secrets service, so " + route_->method +
                               " " + route_->pattern + " cannot be answered",
                           "run the routes through corrald, which always has one")};
    }
    return *context_.secrets;
  }

  const std::string& secret_name() {
    const std::string& name = params_.at("name");
    if (!broker::SecretsService::valid_name(name)) {
      throw InvalidRequest("name", "a secret's name is 1 to 64 of A-Z, a-z, 0-9, '_', '.', '-'");
    }
    return name;
  }

  Response put_secret() {
    const std::string& name = secret_name();
    json request = body();
    only_members(request, {"value"});
    if (!request.contains("value") || !request["value"].is_string()) {
      throw InvalidRequest("value", "\"value\" must be a string: the secret, 1 byte to 64 KiB");
    }
    auto& secrets = secrets_service();
    bool existed = false;
    int64_t now = store::now_ms();
    try {
      context_.store.atomically([&] {
        existed = context_.store.find_secret(tenant_->id, name).has_value();
        secrets.put(tenant_->id, name, request["value"].get<std::string>(), now);
        allow((existed ? "replaced secret \"" : "created secret \"") + name + "\"");
      });
    } catch (const broker::SecretInvalid& invalid) {
      throw InvalidRequest("value", invalid.what());
    }
    return json_response(existed ? 200 : 201, {{"tenant", tenant_->name},
                                               {"name", name},
                                               {"updated_at", iso8601(now)},
                                               {"created", !existed}});
  }

  Response list_secrets() {
    json list = json::array();
    for (const auto& secret : secrets_service().names(tenant_->id))
      list.push_back({{"name", secret.name}, {"updated_at", iso8601(secret.updated_at)}});
    return json_response(200, {{"tenant", tenant_->name}, {"secrets", list}});
  }

  Response delete_secret() {
    const std::string& name = secret_name();
    auto& secrets = secrets_service();
    bool removed = false;
    context_.store.atomically([&] {
      removed = secrets.remove(tenant_->id, name);
      if (removed) allow("deleted secret \"" + name + "\"");
    });
    if (!removed) {
      throw Answer{problem(404, "not-found", "No such secret",
                           "tenant \"" + tenant_->name + "\" has no secret named \"" + name + "\"",
                           "GET /v1/tenants/" + tenant_->name + "/secrets lists its secrets")};
    }
    return json_response(200, {{"tenant", tenant_->name}, {"name", name}, {"deleted", true}});
  }

  // ---- events

  // The outbox in order. A consumer keeps next_after once it has handled a page and asks from
  // there: after a crash it asks again from the cursor it kept, so an event may come twice,
  // never not at all.
  Response list_events() {
    auto options = query({"after", "limit"});
    int64_t after = integer_query(options, "after", 0, INT64_MAX).value_or(0);
    int64_t limit = integer_query(options, "limit", 1, 1000).value_or(100);
    auto events = context_.store.read_events(tenant_->id, after, limit);
    json list = json::array();
    for (const auto& event : events) {
      json payload = json::parse(event.payload, nullptr, false);
      list.push_back({{"seq", event.seq},
                      {"topic", event.topic},
                      {"payload", payload.is_discarded() ? json(event.payload) : payload},
                      {"created_at", iso8601(event.created_at)}});
    }
    return json_response(200, {{"tenant", tenant_->name},
                               {"events", list},
                               {"next_after", events.empty() ? after : events.back().seq}});
  }

  // ---- jobs (src/jobs/jobs.h; docs/api.md, "Jobs" and "Webhooks")

  Response jobs_route(const std::string& action) {
    if (action == "job.submit") return submit_job();
    if (action == "job.list") return list_jobs();
    if (action == "job.read") return read_job();
    if (action == "job.cancel") return cancel_job();
    if (action == "webhook.secret.rotate") return rotate_webhook_secret();
    return list_deliveries();
  }

  jobs::JobService& job_service() {
    if (!context_.jobs) {
      throw Answer{problem(503, "unavailable", "This server runs no jobs",
                           "the API was set up without a job service, so " + route_->method + " " +
                               route_->pattern + " cannot be answered",
                           "run the routes through corrald, which always has one")};
    }
    return *context_.jobs;
  }

  std::string job_path(const store::Job& job) const {
    return "/v1/tenants/" + tenant_->name + "/scripts/" + job.script + "/jobs/" + job.id;
  }

  Response job_response(int status, const store::Job& job) {
    Response response = json_response(status, jobs::job_json(job, tenant_->name));
    response.headers.emplace_back("Location", job_path(job));
    return response;
  }

  // The request's Idempotency-Key, required: a retried submission must be recognisable.
  std::string idempotency_key() {
    const std::string& key = request_.idempotency_key;
    std::string why = key.empty() ? "the Idempotency-Key header is missing"
                                  : "the Idempotency-Key header is not 1 to " +
                                        std::to_string(jobs::kMaxIdempotencyKeyBytes) +
                                        " bytes of printable ASCII without spaces";
    if (!jobs::valid_idempotency_key(key)) {
      throw Answer{problem(400, "invalid", "The request is invalid",
                           why + " (POST " + route_->pattern + ")",
                           "send a key you choose per job, such as a UUID, in Idempotency-Key; "
                           "sending the same key and body again returns the same job",
                           "", {{"field", "Idempotency-Key"}})};
    }
    return key;
  }

  Response submit_job() {
    auto& service = job_service();
    std::string key = idempotency_key();
    auto options = query({"alias", "version"});
    const std::string& script = params_.at("script");
    // What the request asked for, before resolution: part of what idempotency compares.
    std::string target = options.contains("version")
                             ? "version:" + options["version"]
                             : "alias:" + (options.contains("alias") ? options["alias"] : "live");
    json extra = {{"script", script}};
    store::ScriptVersion version = choose_version(options, script, extra);
    auto snapshot = policy_snapshot();
    policy::TenantPolicy tenant_policy = snapshot->policy.for_tenant(tenant_->name);
    require_runnable(version, tenant_policy, extra);

    json request = body(false);
    only_members(request, {"input", "callback_url", "webhook_input"});
    if (request.contains("webhook_input") && !request["webhook_input"].is_boolean()) {
      throw InvalidRequest("webhook_input",
                           "\"webhook_input\" must be false (the webhook leaves the input out) "
                           "or true (the default: it carries the input while the job keeps it)");
    }
    json input = request.contains("input") ? request["input"] : json();
    size_t input_bytes = input.dump().size();
    if (static_cast<int64_t>(input_bytes) > tenant_policy.limits.input_bytes.value) {
      throw InvalidRequest("input", "the input is " + std::to_string(input_bytes) +
                                        " bytes as JSON, over the policy's input_bytes limit of " +
                                        std::to_string(tenant_policy.limits.input_bytes.value) +
                                        " (" + tenant_policy.limits.input_bytes.source + ")");
    }
    std::string callback;
    if (request.contains("callback_url") && !request["callback_url"].is_null()) {
      if (!request["callback_url"].is_string() ||
          request["callback_url"].get<std::string>().size() > 2048) {
        throw InvalidRequest("callback_url",
                             "\"callback_url\" must be an http(s) URL of at most 2048 bytes, or "
                             "absent for no webhook");
      }
      callback = request["callback_url"];
      if (auto refused = jobs::check_callback(tenant_policy, callback)) {
        std::string detail = refused->detail + " (rule: " + refused->rule + ", policy version " +
                             std::to_string(snapshot->version) + ")";
        deny(detail);
        throw Answer{problem(403, "callback-refused", "The callback URL is not allowed", detail,
                             refused->hint, "",
                             {{"field", "callback_url"},
                              {"rule", refused->rule},
                              {"policy_version", snapshot->version}})};
      }
      if (!service.has_webhook_secret(tenant_->id)) {
        throw Answer{
            problem(409, "webhook-secret-missing", "The tenant has no webhook secret",
                    "tenant \"" + tenant_->name +
                        "\" has no webhook signing secret, so a callback could not be signed",
                    "an admin creates one with POST /v1/tenants/" + tenant_->name +
                        "/webhook-secret (it is shown once); then submit the job again")};
      }
    }
    bool webhook_input = request.value("webhook_input", true);
    std::string hash = jobs::request_hash(script, target, input, callback, webhook_input);
    const policy::Jobs& settings = tenant_policy.jobs;
    store::JobDraft draft{.tenant_id = tenant_->id,
                          .script = script,
                          .version = version.version,
                          .alias = extra.contains("alias") ? extra["alias"].get<std::string>() : "",
                          .idempotency_key = key,
                          .request_sha256 = hash,
                          .input = input.dump(-1, ' ', false, json::error_handler_t::replace),
                          .callback_url = callback,
                          .max_attempts = settings.max_attempts.value,
                          .webhook_attempts = settings.webhook_attempts.value,
                          .webhook_backoff_ms = settings.webhook_backoff_ms.value,
                          .created_by = principal_.token_id,
                          .created_at = store::now_ms(),
                          .keep_input = settings.inputs.value,
                          .webhook_input = webhook_input};
    const auto& quota = tenant_policy.quotas.queued_jobs;
    store::JobSubmission submission;
    context_.store.atomically([&] {
      submission = context_.store.submit_job(draft, quota.value, tenant_policy.quotas.jobs.value);
      if (submission.kind == store::JobSubmission::Kind::created) {
        if (context_.usage) context_.usage->record_job(tenant_->id, script);
        allow("queued job " + submission.job.id + " (version " + std::to_string(version.version) +
                  (callback.empty() ? "" : ", with a callback") + ")",
              job_path(submission.job));
      }
    });
    switch (submission.kind) {
      case store::JobSubmission::Kind::existing:
        if (submission.job.request_sha256 != hash) {
          throw Answer{problem(
              409, "idempotency-key-reused", "The Idempotency-Key was used for another request",
              "Idempotency-Key \"" + key + "\" already names job " + submission.job.id +
                  ", submitted with a different script, version, input or callback",
              "use a new key for a new job; to find the earlier one, GET " +
                  job_path(submission.job),
              "", {{"idempotency_key", key}, {"job", submission.job.id}})};
        }
        return job_response(200, submission.job);
      case store::JobSubmission::Kind::over_quota: {
        constexpr int64_t kRetryAfterSeconds = 5;
        std::string detail = "tenant \"" + tenant_->name + "\" has " +
                             std::to_string(submission.unfinished) +
                             " jobs queued or running, its limit (" + quota.source + ")";
        Response response = problem(
            429, "quota-exceeded", "A quota is exhausted", detail,
            "send the job again in " + std::to_string(kRetryAfterSeconds) +
                " s (Retry-After), once some have finished; to queue more, ask the operator to "
                "raise " +
                quota.source,
            "",
            {{"tenant", tenant_->name},
             {"quota", "queued_jobs"},
             {"rule", quota.source},
             {"limit", quota.value},
             {"retry_after", kRetryAfterSeconds},
             {"policy_version", snapshot->version},
             {"outcome", "rejected"}});
        response.headers.emplace_back("Retry-After", std::to_string(kRetryAfterSeconds));
        response.outcome = "rejected";
        return response;
      }
      case store::JobSubmission::Kind::over_kept: {
        const auto& kept = tenant_policy.quotas.jobs;
        return problem(429, "storage-quota-exceeded", "The tenant's storage quota is used up",
                       "tenant \"" + tenant_->name + "\" keeps " + std::to_string(submission.kept) +
                           " jobs, its quota of " + std::to_string(kept.value) + " (" +
                           kept.source + ")",
                       "finished jobs are forgotten once their retention has passed; to keep "
                       "more, ask the operator to raise " +
                           kept.source,
                       "",
                       {{"tenant", tenant_->name},
                        {"quota", "jobs"},
                        {"rule", kept.source},
                        {"limit", kept.value},
                        {"policy_version", snapshot->version}});
      }
      case store::JobSubmission::Kind::created:
        break;
    }
    service.notify();
    Response response = job_response(202, submission.job);
    // The soft limit, as for the other quotas: a warning before the 429.
    int64_t used = submission.unfinished + 1;
    if (quota.value > 0 && used * 100 >= quota.value * 80) {
      response.headers.emplace_back(
          "Corral-Quota-Warning", "queued_jobs=" + std::to_string(used * 100 / quota.value) + "%");
    }
    return response;
  }

  store::Job tenant_job() {
    const std::string& id = params_.at("job");
    auto job = context_.store.find_job(tenant_->id, id);
    if (!job || job->script != params_.at("script")) {
      throw Answer{problem(404, "not-found", "No such job",
                           "script \"" + params_.at("script") + "\" of tenant \"" + tenant_->name +
                               "\" has no job " + id.substr(0, 64),
                           "job ids are those POST …/jobs answered; GET …/jobs lists them")};
    }
    return *job;
  }

  Response read_job() {
    job_service();
    return job_response(200, tenant_job());
  }

  Response list_jobs() {
    job_service();
    auto options = query({"state", "before", "limit"});
    store::JobListing listing{.script = params_.at("script")};
    if (options.contains("state")) {
      listing.state = store::parse_job_state(options["state"]);
      if (!listing.state) {
        throw InvalidRequest("query.state",
                             "state must be queued, running, succeeded, failed or cancelled");
      }
    }
    if (options.contains("before")) listing.before_id = options["before"];
    listing.limit = integer_query(options, "limit", 1, 200).value_or(50);
    auto found = context_.store.list_jobs(tenant_->id, listing);
    json list = json::array();
    for (const auto& job : found) list.push_back(jobs::job_json(job, tenant_->name));
    json answer = {{"tenant", tenant_->name}, {"script", params_.at("script")}, {"jobs", list}};
    answer["next_before"] =
        static_cast<int64_t>(found.size()) == listing.limit ? json(found.back().id) : json();
    return json_response(200, answer);
  }

  // A queued job is cancelled at once (200); a running one is marked and ends cancelled when its
  // run returns, its result discarded (202); a final one cannot be (409).
  Response cancel_job() {
    job_service();
    store::Job job = tenant_job();
    std::optional<store::Job> after;
    store::CancelOutcome outcome = store::CancelOutcome::not_found;
    context_.store.atomically([&] {
      outcome = context_.store.cancel_job(tenant_->id, job.id, store::now_ms(), &after);
      if (outcome == store::CancelOutcome::cancelled) allow("cancelled queued job " + job.id);
      if (outcome == store::CancelOutcome::marked)
        allow("asked running job " + job.id + " to end cancelled");
    });
    switch (outcome) {
      case store::CancelOutcome::cancelled:
        return job_response(200, *after);
      case store::CancelOutcome::marked:
        return job_response(202, *after);
      case store::CancelOutcome::already_final:
        throw Answer{problem(409, "job-final", "The job has finished",
                             "job " + job.id + " is " +
                                 std::string(store::to_string(after->state)) +
                                 " already; a final job cannot be cancelled",
                             "GET " + job_path(*after) + " shows its result", "",
                             {{"job", job.id}, {"state", store::to_string(after->state)}})};
      case store::CancelOutcome::not_found:
        break;
    }
    throw Answer{problem(404, "not-found", "No such job", "job " + job.id + " no longer exists",
                         "GET …/jobs lists the script's jobs")};
  }

  // A new signing secret, shown in this answer only; deliveries sign with it from now on.
  Response rotate_webhook_secret() {
    auto& service = job_service();
    bool existed = service.has_webhook_secret(tenant_->id);
    std::string secret;
    context_.store.atomically([&] {
      secret = service.rotate_webhook_secret(tenant_->id);
      allow(existed ? "rotated the webhook signing secret" : "created the webhook signing secret");
    });
    return json_response(201, {{"tenant", tenant_->name},
                               {"secret", secret},
                               {"algorithm", "HMAC-SHA256"},
                               {"header", "Corral-Signature"},
                               {"replaced", existed}});
  }

  Response list_deliveries() {
    job_service();
    auto options = query({"state", "before", "limit"});
    std::optional<store::DeliveryState> state;
    if (options.contains("state")) {
      state = store::parse_delivery_state(options["state"]);
      if (!state) throw InvalidRequest("query.state", "state must be pending, delivered or dead");
    }
    std::optional<std::string> before;
    if (options.contains("before")) before = options["before"];
    int64_t limit = integer_query(options, "limit", 1, 200).value_or(50);
    auto found = context_.store.list_deliveries(tenant_->id, state, before, limit);
    json list = json::array();
    for (const auto& delivery : found) list.push_back(jobs::delivery_json(delivery));
    json answer = {{"tenant", tenant_->name}, {"deliveries", list}};
    answer["next_before"] =
        static_cast<int64_t>(found.size()) == limit ? json(found.back().id) : json();
    return json_response(200, answer);
  }

  // What the request's log line names (responses.h): what this call resolved, as far as it got.
  // Names from the path may be ones that do not exist: they are cut at the 64 bytes a real name
  // has at most, so a client cannot write long lines into the log.
  void name_in_log(Response::Names& names) const {
    constexpr size_t kLongestName = 64;
    if (tenant_)
      names.tenant = tenant_->name;
    else if (!charged_tenant_.empty())
      names.tenant = charged_tenant_;
    else
      names.tenant = principal_.tenant_name;
    if (auto script = params_.find("script"); script != params_.end())
      names.script = script->second.substr(0, kLongestName);
    names.version = chosen_version_;
    if (auto version = params_.find("version"); names.version == 0 && version != params_.end()) {
      std::from_chars(version->second.data(), version->second.data() + version->second.size(),
                      names.version);
    }
    names.alias = chosen_alias_;
    if (auto alias = params_.find("alias"); names.alias.empty() && alias != params_.end())
      names.alias = alias->second.substr(0, kLongestName);
    names.subject = principal_.subject;
  }

  ApiContext& context_;
  const HttpRequest& request_;
  const RouteInfo* route_ = nullptr;
  std::string_view query_text_;
  std::map<std::string, std::string> params_;
  auth::Principal principal_;
  std::optional<store::Tenant> tenant_;
  // The version an invocation ran and the alias it named, for the log line.
  int64_t chosen_version_ = 0;
  std::string chosen_alias_;
  // The tenant a run of this call is charged to, for the log line when no path names one.
  std::string charged_tenant_;
};

Api::Api(ApiContext context) : context_(std::move(context)) {
  if (!context_.quota_events) context_.quota_events = quota_refusal_events();
  if (!context_.invoker) {
    own_invoker_ =
        std::make_unique<invoke::Invoker>(invoke::Context{.store = context_.store,
                                                          .audit = context_.audit,
                                                          .registry = context_.registry,
                                                          .metrics = context_.metrics,
                                                          .limits = context_.limits,
                                                          .policy = context_.policy,
                                                          .broker = context_.broker,
                                                          .admission = context_.admission,
                                                          .breakers = context_.breakers,
                                                          .cache = context_.cache,
                                                          .runs = context_.runs,
                                                          .usage = context_.usage,
                                                          .anomalies = context_.anomalies,
                                                          .alert_webhook = context_.alert_webhook,
                                                          .quota_events = context_.quota_events,
                                                          .document = run_document});
    context_.invoker = own_invoker_.get();
  }
}

Response Api::handle(const HttpRequest& request) { return Call(context_, request).run(); }

Gate Api::gate(HttpRequest& request) { return Call(context_, request).gate(request); }

std::optional<int64_t> Api::policy_version() const {
  if (!context_.policy) return std::nullopt;
  return context_.policy->current()->version;
}

}  // namespace corral::api

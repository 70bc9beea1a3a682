#include "broker/broker.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "broker/redaction.h"
#include "broker/secret_reference.h"

namespace corral::broker {

struct Broker::Reply {
  enum class Kind { ok, denied, error, limit } kind = Kind::ok;
  nlohmann::json value;
  std::string message;
  std::string target;  // what the call was about (a key, a URL, a topic), for the audit trail

  static Reply ok(nlohmann::json value) { return {Kind::ok, std::move(value), {}, {}}; }
  static Reply denied(std::string message) {
    return {Kind::denied, nullptr, std::move(message), {}};
  }
  static Reply error(std::string message) { return {Kind::error, nullptr, std::move(message), {}}; }
};

namespace {

using Clock = std::chrono::steady_clock;

const std::vector<std::string> kOps = {"kv.get",     "kv.put", "kv.delete",  "kv.list",
                                       "http.fetch", "emit",   "secrets.get"};

std::string capability_of(const std::string& op) { return op.substr(0, op.find('.')); }

std::string_view result_name(int kind) {
  static constexpr std::string_view names[] = {"ok", "denied", "error", "limit"};
  return names[kind];
}

// Argument readers for untrusted calls: each failure names the call and the argument.
const nlohmann::json& argument(const nlohmann::json& args, size_t index) {
  static const nlohmann::json null_value;
  return index < args.size() ? args[index] : null_value;
}

std::optional<std::string> string_argument(const nlohmann::json& args, size_t index) {
  const auto& value = argument(args, index);
  if (!value.is_string()) return std::nullopt;
  return value.get<std::string>();
}

std::string call_name(const std::string& op) { return "ctx." + op; }

// A name a script chose, as a message shows it: cut as the audit trail cuts a field (the message
// goes back to the worker and into the trail; a script must not make either large).
std::string shown(const std::string& name) { return audit::bounded(name, 160); }

nlohmann::json headers_object(const HttpHeaders& headers) {
  nlohmann::json object = nlohmann::json::object();
  for (const auto& [name, value] : headers) {
    std::string key = name;
    std::transform(key.begin(), key.end(), key.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    auto& slot = object[key];
    slot = slot.is_string() ? slot.get<std::string>() + ", " + value : value;
  }
  return object;
}

}  // namespace

Broker::Broker(store::Store& store, const Sealer& sealer, audit::AuditTrail& audit,
               metrics::Registry& metrics)
    : store_(store),
      audit_(audit),
      metrics_(metrics),
      kv_(store, sealer),
      secrets_(store, sealer) {}

CapabilityHandler Broker::handler_for(CallScope scope) {
  auto shared = std::make_shared<const CallScope>(std::move(scope));
  auto calls = std::make_shared<int64_t>(0);
  return [this, shared, calls](std::string_view call, std::chrono::milliseconds remaining) {
    return answer(*shared, *calls, call, remaining);
  };
}

std::string Broker::answer(const CallScope& scope, int64_t& calls, std::string_view call,
                           std::chrono::milliseconds remaining) {
  auto started = Clock::now();
  std::string op = "unknown";
  Reply reply;
  try {
    nlohmann::json parsed = parse_untrusted_json(call);
    if (!parsed.is_object() || !parsed.contains("op") || !parsed["op"].is_string() ||
        !parsed.contains("args") || !parsed["args"].is_array()) {
      reply = Reply::error("a capability call must be {\"op\": ..., \"args\": [...]}");
    } else if (std::find(kOps.begin(), kOps.end(), parsed["op"].get<std::string>()) == kOps.end()) {
      reply = Reply::error("there is no capability operation '" + parsed["op"].get<std::string>() +
                           "'");
    } else {
      op = parsed["op"].get<std::string>();
      // Counted here, whatever the worker says it counted: a compromised worker cannot make
      // more calls than the run allows.
      if (++calls > scope.subrequests) {
        reply.kind = Reply::Kind::limit;
      } else {
        reply = perform(scope, op, parsed["args"], remaining);
      }
    }
  } catch (const store::StorageUnavailable& failure) {
    if (scope.fault) scope.fault->note(failure);
    reply = Reply::error(call_name(op) + " could not be done: corral's storage is " +
                         (failure.disk_full() ? "full" : "failing") +
                         ". This is the service's fault, not the script's; nothing was changed, "
                         "and the run is answered as corral's failure");
  } catch (const std::exception& error) {
    reply = Reply::error(std::string("the capability call could not be read: ") + error.what());
  }

  double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  metrics_.record_capability_call(op, result_name(static_cast<int>(reply.kind)), seconds);
  bool audit_allowed = scope.policy && scope.policy->audit_allowed_capability_calls.value;
  if (reply.kind == Reply::Kind::denied || (reply.kind == Reply::Kind::ok && audit_allowed)) {
    try {
      // A script can repeat a denied call as fast as it runs: one entry per script, operation and
      // window, with a count (the trail bounds each entry's fields too).
      if (reply.kind == Reply::Kind::denied) {
        audit_.record_denial("script " + scope.script, "invocation:" + scope.invocation_id,
                             scope.tenant_name, "capability." + op, reply.target, reply.message);
      } else {
        audit_.record("invocation:" + scope.invocation_id, scope.tenant_name, "capability." + op,
                      reply.target, audit::Decision::allow, "allowed by the policy");
      }
    } catch (const std::exception&) {
      // The call's answer does not depend on the audit write; a store failure shows elsewhere.
    }
  }

  nlohmann::json answer;
  switch (reply.kind) {
    case Reply::Kind::ok:
      answer = {{"ok", std::move(reply.value)}};
      break;
    case Reply::Kind::limit:
      answer = {{"limit", {{"used", calls}, {"allowed", scope.subrequests}}}};
      break;
    case Reply::Kind::denied:
      answer = {{"error", {{"kind", "denied"}, {"message", reply.message}}}};
      break;
    case Reply::Kind::error:
      answer = {{"error", {{"kind", "error"}, {"message", reply.message}}}};
      break;
  }
  return answer.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Broker::Reply Broker::perform(const CallScope& scope, const std::string& op,
                              const nlohmann::json& args, std::chrono::milliseconds remaining) {
  std::string capability = capability_of(op);
  bool requested = std::find(scope.capabilities.begin(), scope.capabilities.end(), capability) !=
                   scope.capabilities.end();
  bool granted = scope.policy && scope.policy->grants(capability);
  if (!granted) {
    return Reply::denied(call_name(op) + " is denied: the policy (version " +
                         std::to_string(scope.policy_version) + ") grants tenant '" +
                         scope.tenant_name + "' no '" + capability +
                         "' capability (rule: tenants." + scope.tenant_name + ".capabilities." +
                         capability + " is absent or false)");
  }
  if (!requested) {
    return Reply::denied(call_name(op) + " is denied: the script's manifest does not ask for '" +
                         capability + "' (rule: manifest.capabilities)");
  }
  if (capability == "http") return http_call(scope, args, remaining);
  // kv, emit and secrets go to the store: in turns by tenant (tenant_turns.h).
  TenantTurns::Turn turn = store_turns_.take(scope.tenant_id);
  if (capability == "kv") return kv_call(scope, op, args);
  if (capability == "emit") return emit_call(scope, args);
  return secrets_call(scope, args);
}

Broker::Reply Broker::kv_call(const CallScope& scope, const std::string& op,
                              const nlohmann::json& args) {
  const policy::KvGrant& grant = *scope.policy->kv;
  std::string ns = grant.scope == policy::KvScope::script ? scope.script : "";
  KvScope where{scope.tenant_id, ns};
  auto key = string_argument(args, 0);
  if (op == "kv.list") {
    const auto& prefix = argument(args, 0);
    if (!prefix.is_null() && !prefix.is_string()) {
      return Reply::error("ctx.kv.list: the prefix must be a string or nil");
    }
    auto keys = kv_.list(where, prefix.is_string() ? prefix.get<std::string>() : "", 1000);
    return Reply::ok(keys);
  }
  if (!key) return Reply::error(call_name(op) + ": the key (argument 1) must be a string");
  Reply reply;
  try {
    if (op == "kv.get") {
      auto value = kv_.get(where, *key);
      reply = Reply::ok(value ? nlohmann::json::parse(*value) : nlohmann::json());
    } else if (op == "kv.delete") {
      reply = Reply::ok(kv_.remove(where, *key));
    } else {
      const auto& value = argument(args, 1);
      if (value.is_null()) {
        return Reply::error(
            "ctx.kv.put: the value (argument 2) is nil; use ctx.kv.delete to "
            "remove a key");
      }
      KvLimits limits{grant.max_key_bytes, grant.max_value_bytes, grant.max_keys,
                      grant.max_total_bytes};
      std::string encoded = value.dump();
      if (auto refused = over_write_budget(scope, "ctx.kv.put",
                                           static_cast<int64_t>(key->size() + encoded.size()))) {
        reply = *refused;
      } else {
        kv_.put(where, *key, encoded, limits);
        reply = Reply::ok(true);
      }
    }
  } catch (const KvLimitExceeded& error) {
    reply = Reply::error(call_name(op) + ": " + error.what() + " (rule: " + grant.source + "." +
                         error.limit + ")");
  } catch (const KvInvalid& error) {
    reply = Reply::error(call_name(op) + ": " + error.what());
  }
  reply.target = *key;
  return reply;
}

Broker::Reply Broker::http_call(const CallScope& scope, const nlohmann::json& args,
                                std::chrono::milliseconds remaining) {
  const policy::HttpGrant& grant = *scope.policy->http;
  const auto& spec = argument(args, 0);
  if (!spec.is_object() || !spec.contains("url") || !spec["url"].is_string()) {
    return Reply::error("ctx.http.fetch takes a table with at least url = \"https://...\"");
  }
  FetchRequest request;
  request.url = spec["url"].get<std::string>();
  const std::string request_url = request.url;
  for (const auto& [name, value] : spec.items()) {
    if (name == "url") continue;
    if (name == "method" && value.is_string()) {
      request.method = value.get<std::string>();
    } else if (name == "body" && value.is_string()) {
      request.body = value.get<std::string>();
    } else if (name == "timeout_ms" && value.is_number_integer()) {
      request.timeout_ms = value.get<int64_t>();
    } else if (name == "headers" && value.is_object()) {
      for (const auto& [header, text] : value.items()) {
        if (!text.is_string()) {
          return Reply::error("ctx.http.fetch: header '" + header + "' must be a string");
        }
        request.headers.emplace_back(header, text.get<std::string>());
      }
    } else {
      return Reply::error("ctx.http.fetch: '" + name +
                          "' is not a field it takes, or has the wrong type (url, method, "
                          "headers, body and timeout_ms are)");
    }
  }
  // Secret references become values here, just before the fetch, and nowhere else (kv, emit and
  // logs keep them as written); `used` is what the response is redacted of.
  std::vector<std::pair<std::string, std::string>> used;
  if (Reply refused = put_secrets(scope, request, used); refused.kind != Reply::Kind::ok) {
    refused.target = request.url;
    return refused;
  }
  HttpRules rules;
  for (const auto& pattern : grant.allow) rules.allow.push_back(pattern.text);
  for (const auto& range : grant.allow_private) rules.allow_private.push_back(range.text);
  rules.max_response_bytes = grant.max_response_bytes;
  rules.max_redirects = grant.max_redirects;
  rules.max_request_bytes = grant.max_request_bytes;
  // The run's own deadline bounds the fetch too: the supervisor must not wait past it.
  rules.timeout_ms = std::max<int64_t>(1, std::min<int64_t>(grant.timeout_ms, remaining.count()));

  FetchResult fetched = http_.fetch(rules, request);
  request = FetchRequest();  // holds the values: not kept a moment longer than the fetch
  if (!used.empty()) {
    // What the remote sends back (an echo, a Location built from a header) must not hand the
    // value to the script that could not read it.
    fetched.body = broker::redact(fetched.body, used);
    for (auto& [name, value] : fetched.headers) {
      name = broker::redact(name, used);
      value = broker::redact(value, used);
    }
    fetched.final_url = broker::redact(fetched.final_url, used);
    fetched.message = broker::redact(fetched.message, used);
  }
  bool confinement_denied = std::any_of(used.begin(), used.end(), [&](const auto& secret) {
    return fetched.rule == scope.policy->secrets->source + ".bind." + secret.first;
  });
  Reply reply;
  switch (fetched.kind) {
    case FetchResult::Kind::ok:
      reply = Reply::ok({{"status", fetched.status},
                         {"headers", headers_object(fetched.headers)},
                         {"body", fetched.body},
                         {"url", fetched.final_url}});
      break;
    case FetchResult::Kind::denied:
      reply = Reply::denied(
          "ctx.http.fetch is denied: " + fetched.message + " (rule: " +
          (confinement_denied ? fetched.rule : grant.source + "." + fetched.rule) + ")");
      break;
    default:
      reply = Reply::error("ctx.http.fetch: " + fetched.message);
  }
  reply.target = fetched.final_url.empty() ? request_url : fetched.final_url;
  return reply;
}

Broker::Reply Broker::put_secrets(const CallScope& scope, FetchRequest& request,
                                  std::vector<std::pair<std::string, std::string>>& used) {
  std::vector<std::vector<ReferenceAt>> in_headers;
  std::vector<std::string> names;
  auto note = [&](const std::vector<ReferenceAt>& found) {
    for (const ReferenceAt& at : found) {
      if (std::find(names.begin(), names.end(), at.name) == names.end()) names.push_back(at.name);
    }
  };
  for (const auto& header : request.headers) {
    in_headers.push_back(find_references(header.second));
    note(in_headers.back());
  }
  std::vector<ReferenceAt> in_body = find_references(request.body);
  note(in_body);
  if (!find_references(request.url).empty()) {
    return Reply::error(
        "ctx.http.fetch: the url holds a secret reference, which the broker never puts in a URL "
        "(URLs reach logs and the audit trail); send the secret in a header or the body");
  }
  if (names.empty()) return Reply::ok(nullptr);

  const std::string& first = names.front();
  bool requested = std::find(scope.capabilities.begin(), scope.capabilities.end(), "secrets") !=
                   scope.capabilities.end();
  if (!scope.policy->secrets) {
    return Reply::denied("ctx.http.fetch is denied: the request carries a reference to secret '" +
                         first + "', but the policy (version " +
                         std::to_string(scope.policy_version) + ") grants tenant '" +
                         scope.tenant_name + "' no 'secrets' capability (rule: tenants." +
                         scope.tenant_name + ".capabilities.secrets is absent or false)");
  }
  const policy::SecretsGrant& grant = *scope.policy->secrets;
  if (!requested) {
    return Reply::denied("ctx.http.fetch is denied: the request carries a reference to secret '" +
                         first +
                         "', but the script's manifest does not ask for 'secrets' (rule: "
                         "manifest.capabilities)");
  }
  for (const std::string& name : names) {
    if (!grant.allows(name)) {
      return Reply::denied(
          "ctx.http.fetch is denied: the request carries a reference to secret '" + name +
          "', which is not among the names the policy allows (rule: " + grant.source + ".names)");
    }
    const policy::SecretBinding* binding = grant.binding(name);
    if (binding == nullptr || binding->origins.empty()) {
      return Reply::denied(
          "ctx.http.fetch is denied: the request carries a reference to secret '" + name +
          "', which the policy binds to no origin, so it is sent nowhere; "
          "the operator can bind it with " +
          grant.source + ".bind." + name + ": [\"https://...\"] (rule: " + grant.source + ".bind)");
    }
    auto value = secrets_.get(scope.tenant_id, name);
    if (!value) {
      return Reply::error("ctx.http.fetch: the request carries a reference to secret '" + name +
                          "', which tenant '" + scope.tenant_name +
                          "' has not set; an admin sets it with PUT /v1/tenants/" +
                          scope.tenant_name + "/secrets/" + name);
    }
    used.emplace_back(name, std::move(*value));
    request.confined_to.push_back({name, binding->origins, grant.source + ".bind." + name});
  }

  auto value_of = [&](const std::string& name) -> const std::string& {
    for (const auto& secret : used) {
      if (secret.first == name) return secret.second;
    }
    throw std::logic_error("a secret reference was not looked up");
  };
  auto substitute = [&](std::string& text, const std::vector<ReferenceAt>& found) {
    if (found.empty()) return;
    std::string out;
    size_t from = 0;
    for (const ReferenceAt& at : found) {
      out.append(text, from, at.begin - from);
      out += value_of(at.name);
      from = at.end;
    }
    out.append(text, from);
    text = std::move(out);
  };
  for (size_t i = 0; i < request.headers.size(); ++i) {
    if (in_headers[i].empty()) continue;
    substitute(request.headers[i].second, in_headers[i]);
    request.credential_headers.push_back(i);
  }
  substitute(request.body, in_body);
  return Reply::ok(nullptr);
}

std::optional<Broker::Reply> Broker::over_write_budget(const CallScope& scope,
                                                       const std::string& call, int64_t bytes) {
  const auto& quota = scope.policy->quotas.store_write_bytes_per_minute;
  auto wait = store_writes_.take(scope.tenant_id, bytes, quota.value, WriteBudget::Clock::now());
  if (!wait) return std::nullopt;
  std::string when =
      std::isinf(*wait)
          ? "it is more than the whole quota, so it never fits; write less at once"
          : "it fits again in " +
                std::to_string(std::max<int64_t>(1, static_cast<int64_t>(std::ceil(*wait)))) + " s";
  return Reply::error(call + ": this call's " + std::to_string(bytes) +
                      " bytes would take tenant '" + scope.tenant_name + "' past its quota of " +
                      std::to_string(quota.value) +
                      " bytes written to the store a minute (kv puts and events), so they were "
                      "not written; " +
                      when + " (rule: " +
                      (quota.source == policy::kBuiltIn
                           ? "the built-in default of quotas.store_write_bytes_per_minute"
                           : quota.source) +
                      ")");
}

Broker::Reply Broker::emit_call(const CallScope& scope, const nlohmann::json& args) {
  const policy::EmitGrant& grant = *scope.policy->emit;
  auto topic = string_argument(args, 0);
  if (!topic) return Reply::error("ctx.emit: the topic (argument 1) must be a string");
  Reply reply;
  if (!grant.allows_topic(*topic)) {
    reply = Reply::denied("ctx.emit is denied: topic '" + shown(*topic) +
                          "' matches none of the topics the policy allows (rule: " + grant.source +
                          ".topics)");
  } else {
    std::string payload = argument(args, 1).dump();
    if (static_cast<int64_t>(payload.size()) > grant.max_payload_bytes) {
      reply = Reply::error("ctx.emit: the payload is " + std::to_string(payload.size()) +
                           " bytes as JSON, over the limit max_payload_bytes = " +
                           std::to_string(grant.max_payload_bytes) + " (rule: " + grant.source +
                           ".max_payload_bytes)");
    } else if (auto refused = over_write_budget(
                   scope, "ctx.emit", static_cast<int64_t>(topic->size() + payload.size()))) {
      reply = *refused;
    } else {
      auto event = store_.append_event(scope.tenant_id, *topic, payload, store::now_ms(),
                                       scope.policy->quotas.events.value,
                                       scope.policy->quotas.event_bytes.value);
      reply = Reply::ok(event.seq);
    }
  }
  reply.target = *topic;
  return reply;
}

Broker::Reply Broker::secrets_call(const CallScope& scope, const nlohmann::json& args) {
  const policy::SecretsGrant& grant = *scope.policy->secrets;
  auto name = string_argument(args, 0);
  if (!name) return Reply::error("ctx.secrets.get: the name (argument 1) must be a string");
  Reply reply;
  if (!grant.allows(*name)) {
    reply = Reply::denied("ctx.secrets.get is denied: secret '" + shown(*name) +
                          "' is not among the names the policy allows (rule: " + grant.source +
                          ".names)");
  } else if (grant.is_reference_only(*name)) {
    reply = Reply::denied("ctx.secrets.get is denied: secret '" + shown(*name) +
                          "' is reference-only, so no script reads its value; send it with "
                          "ctx.secrets.ref(\"" +
                          *name +
                          "\") in an http.fetch header or body to an origin it is bound to "
                          "(rule: " +
                          grant.source + ".reference_only)");
  } else {
    auto value = secrets_.get(scope.tenant_id, *name);
    reply = Reply::ok(value ? nlohmann::json(*value) : nlohmann::json());
  }
  reply.target = *name;
  return reply;
}

void Broker::redact(const std::string& tenant_id, InvocationResult& result) {
  bool has_text = !result.logs.empty() || !result.message.empty() || !result.traceback.empty();
  if (!has_text) return;
  auto secrets = secrets_.values(tenant_id);
  if (secrets.empty()) return;
  result.message = broker::redact(result.message, secrets);
  result.traceback = broker::redact(result.traceback, secrets);
  for (auto& entry : result.logs) entry.message = broker::redact(entry.message, secrets);
}

}  // namespace corral::broker

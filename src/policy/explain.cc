// explain(): one action, one tenant, the rule that decides. The answers are the ones the broker
// and the API reach, because they read the same resolved TenantPolicy and matching functions.
#include <algorithm>
#include <charconv>
#include <stdexcept>

#include "policy/policy.h"

namespace corral::policy {

namespace {

constexpr std::string_view kKnownActions =
    "log.debug, log.info, log.warn, log.error, kv.get, kv.put, kv.delete, kv.list, "
    "http.fetch [URL], emit [TOPIC], secrets.get [NAME], secrets.ref NAME [URL], publish, "
    "publish_unsigned, "
    "invoke_unapproved, self_approve";

std::string quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

std::string_view trim(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  return text;
}

// The rule behind a setting: its path, or which built-in value applied.
std::string rule_of(const std::string& source, std::string_view key) {
  return source == kBuiltIn ? "built-in default of " + std::string(key) : source;
}

Decision not_granted(const TenantPolicy& policy, std::string_view tenant,
                     std::string_view capability, std::string_view call) {
  std::string name(capability);
  if (auto revoked = policy.revoked.find(capability); revoked != policy.revoked.end()) {
    return {false, revoked->second,
            std::string(call) + " is denied: " + revoked->second + " revokes " + name +
                " for tenant " + quoted(tenant) + "; grant it there with " + name +
                ": {…} to allow it"};
  }
  return {false, "no rule grants " + name + " to tenant " + quoted(tenant),
          std::string(call) + " is denied: neither defaults.capabilities nor tenants." +
              std::string(tenant) + ".capabilities grants " + name + "; add " + name +
              ": {…} under one of them to allow it"};
}

struct Origin {
  std::string scheme;
  std::string host;
  int port = 0;
};

// scheme://[user@]host[:port][/path][?query][#fragment], enough to name the origin a request
// goes to. The broker parses URLs with the library that fetches them.
Origin parse_url(std::string_view url) {
  auto fail = [&](const std::string& what) -> Origin {
    throw std::invalid_argument("the URL " + quoted(url) + " " + what +
                                "; give an absolute URL such as https://api.example.com/path");
  };
  Origin origin;
  size_t separator = url.find("://");
  if (separator == std::string_view::npos || separator == 0) return fail("has no scheme");
  origin.scheme = std::string(url.substr(0, separator));
  std::transform(origin.scheme.begin(), origin.scheme.end(), origin.scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string_view rest = url.substr(separator + 3);
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.find('@') != std::string_view::npos)
    return fail("holds a user name; the broker refuses credentials in URLs");
  std::string_view port_text;
  if (authority.starts_with('[')) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return fail("has an IPv6 address without ']'");
    origin.host = std::string(authority.substr(0, close + 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty() && !after.starts_with(':')) return fail("has text after ']'");
    if (!after.empty()) port_text = after.substr(1);
  } else {
    size_t colon = authority.rfind(':');
    origin.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (origin.host.empty()) return fail("has no host");
  if (port_text.empty()) {
    origin.port = origin.scheme == "https" ? 443 : origin.scheme == "http" ? 80 : 0;
  } else {
    auto [end, error] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), origin.port);
    if (error != std::errc() || end != port_text.data() + port_text.size() || origin.port < 1 ||
        origin.port > 65535) {
      return fail("has a port that is not a number from 1 to 65535");
    }
  }
  return origin;
}

std::string list_patterns(const std::vector<OriginPattern>& patterns) {
  std::string out;
  for (const auto& pattern : patterns) out += (out.empty() ? "" : ", ") + pattern.text;
  return out;
}

std::string list_strings(const std::vector<std::string>& strings) {
  std::string out;
  for (const auto& text : strings) out += (out.empty() ? "" : ", ") + text;
  return out;
}

void no_target(std::string_view action, std::string_view target) {
  if (!target.empty()) {
    throw std::invalid_argument("the action " + quoted(action) + " takes no target, but " +
                                quoted(target) + " was given; the known actions are " +
                                std::string(kKnownActions));
  }
}

Decision explain_http(const TenantPolicy& policy, std::string_view tenant, std::string_view url) {
  if (!policy.http) return not_granted(policy, tenant, "http", "http.fetch");
  const HttpGrant& grant = *policy.http;
  if (url.empty()) {
    if (grant.allow.empty()) {
      return {true, grant.source,
              "http.fetch is granted, but its allow list is empty, so every URL will be refused; "
              "add origin patterns under " +
                  grant.source + ".allow"};
    }
    return {true, grant.source,
            "http.fetch is granted for URLs whose origin matches one of " +
                std::to_string(grant.allow.size()) + " patterns: " + list_patterns(grant.allow)};
  }
  Origin origin = parse_url(url);
  std::string shown = origin.scheme + "://" + origin.host + ":" + std::to_string(origin.port);
  if (auto index = grant.matching_pattern(origin.scheme, origin.host, origin.port)) {
    return {true, grant.source + ".allow[" + std::to_string(*index) + "]",
            "http.fetch of " + std::string(url) + " is allowed: its origin " + shown + " matches " +
                quoted(grant.allow[*index].text) +
                " (the broker still refuses private, loopback and link-local addresses the name "
                "resolves to unless allow_private names them)"};
  }
  std::string reason = "http.fetch of " + std::string(url) + " is denied: its origin " + shown;
  if (grant.allow.empty()) {
    reason += " is not allowed because the allow list is empty";
  } else {
    reason += " matches none of " + list_patterns(grant.allow);
  }
  return {false, grant.source + ".allow", reason + "; add a pattern for it to allow it"};
}

Decision explain_emit(const TenantPolicy& policy, std::string_view tenant, std::string_view topic) {
  if (!policy.emit) return not_granted(policy, tenant, "emit", "emit");
  const EmitGrant& grant = *policy.emit;
  if (topic.empty()) {
    return {true, grant.source,
            grant.topics.empty()
                ? "emit is granted, but its topics list is empty, so every topic will be refused"
                : "emit is granted for topics matching " + list_strings(grant.topics) +
                      "; payloads up to " + std::to_string(grant.max_payload_bytes) + " bytes"};
  }
  if (!valid_topic(topic)) {
    throw std::invalid_argument(quoted(topic) +
                                " is not a topic; a topic is 1 to 128 letters, digits, '.', '_', "
                                "'-', ':' or '/'");
  }
  if (auto index = grant.matching_topic(topic)) {
    return {true, grant.source + ".topics[" + std::to_string(*index) + "]",
            "emit to " + quoted(topic) + " is allowed: it matches " + quoted(grant.topics[*index])};
  }
  return {false, grant.source + ".topics",
          "emit to " + quoted(topic) + " is denied: it matches none of [" +
              list_strings(grant.topics) + "]; add a pattern for it to allow it"};
}

Decision explain_secret(const TenantPolicy& policy, std::string_view tenant,
                        std::string_view name) {
  if (!policy.secrets) return not_granted(policy, tenant, "secrets", "secrets.get");
  const SecretsGrant& grant = *policy.secrets;
  if (name.empty() || (!grant.names && !grant.is_reference_only(name))) {
    return {true, grant.source,
            !grant.names ? "secrets.get is granted for every secret of tenant " + quoted(tenant)
                         : "secrets.get is granted for the secrets " + list_strings(*grant.names)};
  }
  if (name_problem(name)) {
    throw std::invalid_argument(quoted(name) +
                                " is not a secret name; names are 1 to 64 letters, digits, '.', "
                                "'_' or '-', starting with a letter or digit");
  }
  if (grant.allows(name) && grant.is_reference_only(name)) {
    return {false, grant.source + ".reference_only",
            "secrets.get of " + quoted(name) +
                " is denied: the secret is reference-only, so no script reads its value; a script "
                "sends it with ctx.secrets.ref(" +
                quoted(name) + ") in an http.fetch header or body to an origin bound to it"};
  }
  auto found = std::find(grant.names->begin(), grant.names->end(), name);
  if (found != grant.names->end()) {
    return {true, grant.source + ".names[" + std::to_string(found - grant.names->begin()) + "]",
            "secrets.get of " + quoted(name) + " is allowed: the grant names it"};
  }
  return {false, grant.source + ".names",
          "secrets.get of " + quoted(name) + " is denied: the grant allows only " +
              list_strings(*grant.names) + "; add it to names to allow it"};
}

// "secrets.ref NAME [URL]": whether the broker would put NAME's value in place of a reference in
// a fetch of URL (or, without one, where it would).
Decision explain_secret_ref(const TenantPolicy& policy, std::string_view tenant,
                            std::string_view target) {
  if (!policy.secrets) return not_granted(policy, tenant, "secrets", "secrets.ref");
  const SecretsGrant& grant = *policy.secrets;
  size_t space = target.find(' ');
  std::string_view name = trim(target.substr(0, space));
  std::string_view url =
      space == std::string_view::npos ? std::string_view() : trim(target.substr(space + 1));
  if (name.empty() || name_problem(name)) {
    throw std::invalid_argument(
        "secrets.ref takes a secret name and optionally a URL, e.g. \"secrets.ref stripe "
        "https://api.stripe.com/v1/charges\"; " +
        (name.empty() ? std::string("no name was given") : quoted(name) + " is not a secret name"));
  }
  std::string subject = "a reference to secret " + quoted(name);
  if (!grant.allows(name)) {
    return {false, grant.source + ".names",
            subject + " is denied: the grant allows only " + list_strings(*grant.names) +
                "; add it to names to allow it"};
  }
  const SecretBinding* binding = grant.binding(name);
  if (binding == nullptr || binding->origins.empty()) {
    return {false, grant.source + ".bind",
            subject + " is sent nowhere: the policy binds it to no origin; bind it with " +
                grant.source + ".bind." + std::string(name) + ": [\"https://...\"]"};
  }
  std::string rule = grant.source + ".bind." + std::string(name);
  if (url.empty()) {
    return {true, rule,
            subject + " is replaced by its value in fetches to " + list_patterns(binding->origins) +
                " (every hop, redirects included)"};
  }
  Origin origin = parse_url(url);
  std::string shown = origin.scheme + "://" + origin.host + ":" + std::to_string(origin.port);
  for (size_t i = 0; i < binding->origins.size(); ++i) {
    if (!binding->origins[i].matches(origin.scheme, origin.host, origin.port)) continue;
    return {true, rule + "[" + std::to_string(i) + "]",
            subject + " in a fetch of " + std::string(url) + " is replaced by its value: " + shown +
                " matches " + quoted(binding->origins[i].text) +
                " (the fetch itself must still be allowed by http.allow)"};
  }
  return {false, rule,
          subject + " in a fetch of " + std::string(url) + " is denied: " + shown +
              " matches none of " + list_patterns(binding->origins) + "; add a pattern for it to " +
              rule + " to allow it"};
}

Decision explain_kv(const TenantPolicy& policy, std::string_view tenant, std::string_view call,
                    std::string_view key) {
  if (!policy.kv) return not_granted(policy, tenant, "kv", call);
  const KvGrant& grant = *policy.kv;
  if (static_cast<int64_t>(key.size()) > grant.max_key_bytes) {
    return {false, grant.source,
            std::string(call) + " is denied: the key is " + std::to_string(key.size()) +
                " bytes and the grant allows keys of at most " +
                std::to_string(grant.max_key_bytes) + " (max_key_bytes)"};
  }
  return {true, grant.source,
          std::string(call) + " is allowed: kv is granted with scope " +
              std::string(to_string(grant.scope)) + ", keys up to " +
              std::to_string(grant.max_key_bytes) + " bytes, values up to " +
              std::to_string(grant.max_value_bytes) + " bytes, at most " +
              std::to_string(grant.max_keys) + " keys and " +
              std::to_string(grant.max_total_bytes) + " bytes in all"};
}

Decision explain_governance(const Governance& governance, std::string_view action) {
  const auto& signature = governance.signature_required;
  const auto& approval = governance.approval_required;
  const auto& self = governance.self_approval_allowed;
  std::string keys = std::to_string(governance.public_keys.value.size());
  if (action == "publish") {
    return {true, rule_of(signature.source, "governance.signature_required"),
            signature.value ? "publishing is allowed with an Ed25519 signature over the version's "
                              "SHA-256 by one of the tenant's " +
                                  keys + " public keys"
                            : "publishing is allowed; no signature is required"};
  }
  if (action == "publish_unsigned") {
    return {!signature.value, rule_of(signature.source, "governance.signature_required"),
            signature.value ? "publishing without a signature is denied: signature_required is "
                              "true; sign the version with one of the tenant's " +
                                  keys + " public keys (corral publish --sign KEY)"
                            : "publishing without a signature is allowed: signature_required is "
                              "false"};
  }
  if (action == "invoke_unapproved") {
    return {!approval.value, rule_of(approval.source, "governance.approval_required"),
            approval.value ? "invoking a version that is not approved is denied: "
                             "approval_required is true; a reviewer must approve it first"
                           : "invoking a version that is not approved is allowed: "
                             "approval_required is false"};
  }
  return {self.value, rule_of(self.source, "governance.self_approval_allowed"),
          self.value ? "a publisher may approve their own version: self_approval_allowed is true"
                     : "a publisher may not approve their own version: self_approval_allowed is "
                       "false; another reviewer must approve it"};
}

}  // namespace

Decision Policy::explain(std::string_view tenant, std::string_view action_text) const {
  if (auto problem = name_problem(tenant)) {
    throw std::invalid_argument("tenant name " + quoted(tenant) + ": " + *problem);
  }
  action_text = trim(action_text);
  size_t split = action_text.find_first_of(" :");
  std::string_view action = action_text.substr(0, split);
  std::string_view target =
      split == std::string_view::npos ? std::string_view() : trim(action_text.substr(split + 1));
  TenantPolicy policy = for_tenant(tenant);

  if (action == "log.debug" || action == "log.info" || action == "log.warn" ||
      action == "log.error") {
    no_target(action, target);
    return {
        true,
        policy.log.source == kBuiltIn ? "built-in: ctx.log is always granted" : policy.log.source,
        std::string(action) + " is always allowed; each message is capped at " +
            std::to_string(policy.log.max_entry_bytes) + " bytes and all of a run's messages at " +
            std::to_string(policy.limits.log_bytes.value) + " bytes (" +
            rule_of(policy.limits.log_bytes.source, "limits.log_bytes") + ")"};
  }
  if (action == "kv.get" || action == "kv.put" || action == "kv.delete" || action == "kv.list") {
    return explain_kv(policy, tenant, action, target);
  }
  if (action == "http.fetch") return explain_http(policy, tenant, target);
  if (action == "emit") return explain_emit(policy, tenant, target);
  if (action == "secrets.get") return explain_secret(policy, tenant, target);
  if (action == "secrets.ref") return explain_secret_ref(policy, tenant, target);
  if (action == "publish" || action == "publish_unsigned" || action == "invoke_unapproved" ||
      action == "self_approve") {
    no_target(action, target);
    return explain_governance(policy.governance, action);
  }
  throw std::invalid_argument("unknown action " + quoted(action) + "; the known actions are " +
                              std::string(kKnownActions));
}

}  // namespace corral::policy

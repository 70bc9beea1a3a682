#include "registry/registry.h"

#include <sodium.h>

#include <charconv>
#include <map>

namespace corral::registry {

namespace {

std::string where(const store::Tenant& tenant, std::string_view script, int64_t version) {
  return "version " + std::to_string(version) + " of script \"" + std::string(script) +
         "\" of tenant \"" + tenant.name + "\"";
}

// What a new version is called before it has a number.
std::string new_version_of(const store::Tenant& tenant, std::string_view script) {
  return "the version of script \"" + std::string(script) + "\" of tenant \"" + tenant.name +
         "\" being published";
}

// A call explain() decides as it decides the capability as a whole (log is always granted).
std::string_view explained_call(std::string_view capability) {
  if (capability == "kv") return "kv.get";
  if (capability == "http") return "http.fetch";
  if (capability == "secrets") return "secrets.get";
  if (capability == "log") return "log.info";
  return capability;  // "emit"
}

Refusal conflict(const std::string& detail, const std::string& hint) {
  return Refusal(409, "state-conflict", "The version is not in a state that allows this", detail,
                 hint);
}

}  // namespace

int64_t parse_version_number(std::string_view text) {
  int64_t number = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || number < 1) {
    throw Refusal(400, "invalid", "The version number is not valid",
                  "\"" + std::string(text.substr(0, 80)) + "\" is not a version number",
                  "versions are numbered 1, 2, 3…; GET .../versions lists them");
  }
  return number;
}

Registry::Registry(store::Store& store, Executor& executor, RegistryOptions options)
    : store_(store), executor_(executor), options_(std::move(options)) {}

store::Published Registry::publish(const store::Tenant& tenant, std::string_view script,
                                   std::string_view source, const nlohmann::json& manifest_json,
                                   const std::optional<Signature>& signature,
                                   const policy::Policy& policy, const Actor& publisher,
                                   const RecordPublished& record, const CheckRan& check_ran) {
  check_name("script name", "script", script);
  Manifest manifest = parse_manifest(manifest_json);
  policy::TenantPolicy rules = policy.for_tenant(tenant.name);
  // The signature first: nothing else about an unsigned source is worth looking at.
  Digest digest = sha256(source);
  PublishDecisions decisions;
  decisions.signed_by = check_signature(tenant, script, digest, signature, rules);
  check_capabilities(tenant, manifest, rules, policy);
  check_compiles(source);
  std::string hex = to_hex(digest);
  // Publishing the same source again answers with the version that exists, without running it.
  for (const auto& existing : store_.list_versions(tenant.id, script)) {
    if (existing.sha256 == hex) return {existing, false};
  }
  check_storage_quota(tenant, source.size(), rules.quotas);
  // Outside the transaction: it waits on a worker.
  check_defines_handle(tenant, source, rules.limits, check_ran);
  const auto& approval = rules.governance.approval_required;
  store::Published published;
  store_.atomically([&] {
    // A concurrent publish of the same source may have won the race; the store answers with its.
    published = store_.insert_version(tenant.id, script, hex, source, manifest.to_json().dump(),
                                      publisher.token_id, store::now_ms());
    if (!published.created) return;
    if (decisions.signed_by) {
      published.version =
          store_.record_signer(tenant.id, script, published.version.version, *decisions.signed_by);
    }
    if (!approval.value) {
      published.version = store_.set_version_state(tenant.id, script, published.version.version,
                                                   store::VersionState::approved, kApprovedByPolicy,
                                                   published.version.published_at);
      decisions.approved_by_rule = approval.source;
    }
    record(published, decisions);
  });
  return published;
}

void Registry::check_capabilities(const store::Tenant& tenant, const Manifest& manifest,
                                  const policy::TenantPolicy& rules, const policy::Policy& policy) {
  nlohmann::json refused = nlohmann::json::array();
  std::string names, decided_by;
  for (const auto& capability : manifest.capabilities) {
    if (rules.grants(capability)) continue;
    // explain() names the rule that left it out: the `false` that revoked it, or no rule at all.
    policy::Decision decision = policy.explain(tenant.name, explained_call(capability));
    refused.push_back(
        {{"capability", capability}, {"rule", decision.rule}, {"reason", decision.reason}});
    names += (names.empty() ? "" : ", ") + capability;
    decided_by += (decided_by.empty() ? "" : "; ") + capability + ": " + decision.rule;
  }
  if (refused.empty()) return;
  Refusal refusal(
      403, "capability-not-granted", "The manifest asks for capabilities the policy does not grant",
      "tenant \"" + tenant.name + "\" is not granted " + names + ", which the manifest asks for (" +
          decided_by + ")",
      "remove " + names + " from the manifest's capabilities, or ask an operator to grant " +
          (refused.size() == 1 ? "it" : "them") + " under tenants." + tenant.name +
          ".capabilities in the policy (GET /v1/policy/explain?tenant=" + tenant.name + "&action=" +
          std::string(explained_call(refused[0]["capability"].get<std::string>())) + " says why)");
  refusal.extra = {{"capabilities_not_granted", refused}};
  throw refusal;
}

std::optional<std::string> Registry::check_signature(const store::Tenant& tenant,
                                                     std::string_view script, const Digest& digest,
                                                     const std::optional<Signature>& signature,
                                                     const policy::TenantPolicy& rules) {
  const auto& required = rules.governance.signature_required;
  const auto& keys = rules.governance.public_keys.value;
  if (!signature) {
    if (!required.value) return std::nullopt;
    throw Refusal(403, "signature-required", "The version must be signed",
                  "tenant \"" + tenant.name + "\" requires every version to be signed (" +
                      required.source + " is true), and " + new_version_of(tenant, script) +
                      " carries no signature",
                  "sign the source with a key the policy lists for the tenant (" +
                      std::to_string(keys.size()) +
                      " listed): `corral publish FILE --sign NAME.key`, or send \"signature\": "
                      "the base64 Ed25519 signature of the source's raw SHA-256");
  }
  // A signature nobody can check is refused rather than ignored: accepting it would let the
  // publisher believe the version is signed.
  if (keys.empty()) {
    throw Refusal(422, "signature-unverifiable", "The signature cannot be checked",
                  new_version_of(tenant, script) + " carries a signature, but tenant \"" +
                      tenant.name +
                      "\" has no signing keys to verify it against (the policy lists no "
                      "governance.public_keys for it)",
                  "register the signer's public key under tenants." + tenant.name +
                      ".governance.public_keys in the policy (PUT /v1/policy; `corral keygen "
                      "--out NAME` writes NAME.pub), or publish without --sign");
  }
  return verify_signature(*signature, digest, keys, new_version_of(tenant, script)).base64;
}

// Checked again in the transaction would be exact; checked here it may let a few concurrent
// publishes past the bound by one each, which the publish rate bounds in turn.
void Registry::check_storage_quota(const store::Tenant& tenant, size_t source_bytes,
                                   const policy::Quotas& quotas) {
  store::VersionUsage usage = store_.version_usage(tenant.id);
  auto refuse = [&](const policy::Setting<int64_t>& quota, const std::string& what) {
    Refusal refusal(429, "storage-quota-exceeded", "The tenant's storage quota is used up",
                    "tenant \"" + tenant.name + "\" " + what + " (" + quota.source + ")",
                    "ask an operator to raise " + quota.source +
                        " (versions are kept for audit and rollback, and cannot be deleted yet)");
    refusal.extra = {{"quota", quota.source.substr(quota.source.rfind('.') + 1)},
                     {"rule", quota.source},
                     {"limit", quota.value}};
    throw refusal;
  };
  if (usage.versions >= quotas.versions.value) {
    refuse(quotas.versions, "keeps " + std::to_string(usage.versions) + " versions, its quota of " +
                                std::to_string(quotas.versions.value));
  }
  if (usage.source_bytes + static_cast<int64_t>(source_bytes) > quotas.version_bytes.value) {
    refuse(quotas.version_bytes, "keeps " + std::to_string(usage.source_bytes) +
                                     " bytes of sources; this one's " +
                                     std::to_string(source_bytes) + " would pass its quota of " +
                                     std::to_string(quotas.version_bytes.value) + " bytes");
  }
}

void Registry::check_defines_handle(const store::Tenant& tenant, std::string_view source,
                                    const policy::Limits& tenant_limits,
                                    const CheckRan& check_ran) {
  InvocationRequest probe;
  probe.invocation_id = new_invocation_id();
  probe.tenant =
      tenant.id;  // the tenant's own workers: its code never shares a process with another's
  probe.source = handle_probe(source);
  // Never more than the tenant could spend on an invocation of its own.
  const Limits& most = options_.probe_limits;
  probe.limits =
      Limits{.fuel = std::min(most.fuel, tenant_limits.fuel.value),
             .memory_bytes = std::min(most.memory_bytes, tenant_limits.memory_bytes.value),
             .timeout_ms = std::min(most.timeout_ms, tenant_limits.timeout_ms.value),
             .output_bytes = most.output_bytes,
             .log_bytes = std::min(most.log_bytes, tenant_limits.log_bytes.value),
             .subrequests = 0};
  InvocationResult result = executor_.run(probe);
  if (check_ran) check_ran(result);
  const std::string hint_top =
      "the top level of a script should only define functions and constants";
  switch (result.outcome) {
    case Outcome::ok:
      if (result.output == "function") return;
      throw InvalidInput(
          "source",
          "the script defines no global function 'handle' (after its top level ran, "
          "handle is " +
              (result.output.is_string() ? result.output.get<std::string>() : "missing") + ")",
          "define it as 'function handle(input, ctx) ... end', not as a local");
    case Outcome::script_error: {
      InvalidInput error("source", "the script's top level raised an error: " + result.message,
                         hint_top);
      error.line = result.line;
      throw error;
    }
    case Outcome::limit_exceeded:
      throw InvalidInput("source",
                         "the script's top level exceeded a limit: " + describe_failure(result),
                         hint_top);
    case Outcome::invalid: {
      InvalidInput error("source", result.message, "correct the script as the message says");
      error.line = result.line;
      error.column = result.column;
      throw error;
    }
    case Outcome::crashed:
    case Outcome::rejected:
    case Outcome::denied:
      throw Refusal(
          503, "unavailable", "The script could not be checked",
          "running the script's top level to find handle failed: " + describe_failure(result),
          "retry in a moment; report invocation " + result.invocation_id + " if it persists");
  }
}

bool Registry::same_person(const std::string& publisher_token_id, const Actor& approver) {
  if (publisher_token_id == approver.token_id) return true;
  if (approver.subject.empty()) return false;
  auto publisher = store_.find_token(publisher_token_id);
  return publisher && publisher->subject == approver.subject;
}

store::ScriptVersion Registry::approve(const store::Tenant& tenant, std::string_view script,
                                       int64_t number, const policy::Policy& policy,
                                       const Actor& reviewer, const RecordVersion& record) {
  policy::Decision self_approval = policy.explain(tenant.name, "self_approve");
  bool self_approval_allowed = self_approval.allowed || options_.allow_self_approval_for_all;
  store::ScriptVersion changed;
  // Checked and changed in one transaction, so two reviewers racing cannot both approve.
  store_.atomically([&] {
    store::ScriptVersion current = version(tenant, script, number);
    if (current.state != store::VersionState::pending) {
      throw conflict(where(tenant, script, number) + " is " +
                         std::string(store::to_string(current.state)) +
                         ", not pending; only a pending version can be approved",
                     "publish a new version to have it reviewed");
    }
    if (!self_approval_allowed && same_person(current.published_by, reviewer)) {
      throw Refusal(
          403, "self-approval", "You cannot approve your own version",
          where(tenant, script, number) + " was published by " +
              (reviewer.subject.empty() ? "this token" : "\"" + reviewer.subject + "\"") +
              ", who is also the approver; the policy forbids approving one's own work (" +
              self_approval.rule + " is false)",
          "ask another reviewer to approve it (an operator may allow approving one's own "
          "versions with governance.self_approval_allowed in the policy)");
    }
    changed = store_.set_version_state(tenant.id, script, number, store::VersionState::approved,
                                       reviewer.token_id, store::now_ms());
    record(changed);
  });
  return changed;
}

store::ScriptVersion Registry::deprecate(const store::Tenant& tenant, std::string_view script,
                                         int64_t number, const Actor& reviewer,
                                         const RecordVersion& record) {
  store::ScriptVersion changed;
  store_.atomically([&] {
    store::ScriptVersion current = version(tenant, script, number);
    if (current.state != store::VersionState::approved) {
      throw conflict(
          where(tenant, script, number) + " is " + std::string(store::to_string(current.state)) +
              "; only an approved version can be deprecated",
          current.state == store::VersionState::pending ? "approve it first, or disable it"
                                                        : "nothing to do");
    }
    changed = store_.set_version_state(tenant.id, script, number, store::VersionState::deprecated,
                                       reviewer.token_id, store::now_ms());
    record(changed);
  });
  return changed;
}

store::ScriptVersion Registry::disable(const store::Tenant& tenant, std::string_view script,
                                       int64_t number, const Actor& actor,
                                       const RecordVersion& record) {
  store::ScriptVersion changed;
  store_.atomically([&] {
    store::ScriptVersion current = version(tenant, script, number);
    if (current.state == store::VersionState::disabled) {
      throw conflict(where(tenant, script, number) + " is disabled already", "nothing to do");
    }
    changed = store_.set_version_state(tenant.id, script, number, store::VersionState::disabled,
                                       actor.token_id, store::now_ms());
    record(changed);
  });
  return changed;
}

store::Alias Registry::set_alias(const store::Tenant& tenant, std::string_view script,
                                 std::string_view alias, int64_t number, const Actor& actor,
                                 const RecordAlias& record, bool auto_rollback,
                                 std::optional<store::Canary> canary) {
  check_name("alias name", "alias", alias);
  if (canary && (canary->weight < 1 || canary->weight > 99)) {
    throw InvalidInput("canary.weight",
                       "the canary's weight is " + std::to_string(canary->weight) +
                           " percent; it must be from 1 to 99",
                       "give the share of invocations the canary version takes, in percent");
  }
  if (canary && canary->version == number) {
    throw InvalidInput("canary.version",
                       "the canary is version " + std::to_string(number) +
                           ", the version the alias already points at",
                       "name another approved version as the canary, or leave the canary out");
  }
  store::Alias changed;
  store_.atomically([&] {
    std::vector<int64_t> targets = {number};
    if (canary) targets.push_back(canary->version);
    for (int64_t target_number : targets) {
      store::ScriptVersion target = version(tenant, script, target_number);
      if (target.state == store::VersionState::approved) continue;
      throw conflict("alias \"" + std::string(alias) + "\" cannot " +
                         (target_number == number ? "point at " : "have as its canary ") +
                         where(tenant, script, target_number) + ": it is " +
                         std::string(store::to_string(target.state)) +
                         ", and aliases point only at approved versions",
                     target.state == store::VersionState::pending
                         ? "have a reviewer approve it first (POST .../versions/" +
                               std::to_string(target_number) + "/approve)"
                         : "point the alias at an approved version");
    }
    auto before = store_.find_alias(tenant.id, script, alias);
    changed = store_.put_alias(tenant.id, script, alias, number, actor.token_id, store::now_ms(),
                               auto_rollback, canary);
    record(changed, before ? std::optional<int64_t>(before->version) : std::nullopt);
  });
  return changed;
}

void Registry::require_script(const store::Tenant& tenant, std::string_view script) {
  check_name("script name", "script", script);
  if (store_.list_versions(tenant.id, script).empty()) {
    throw Refusal(
        404, "not-found", "No such script",
        "tenant \"" + tenant.name + "\" has no script named \"" + std::string(script) + "\"",
        "GET /v1/tenants/" + tenant.name + "/scripts lists them; publish creates one");
  }
}

store::ScriptVersion Registry::version(const store::Tenant& tenant, std::string_view script,
                                       int64_t number) {
  check_name("script name", "script", script);
  auto found = store_.find_version(tenant.id, script, number);
  if (!found) {
    throw Refusal(404, "not-found", "No such version",
                  where(tenant, script, number) + " does not exist",
                  "GET /v1/tenants/" + tenant.name + "/scripts/" + std::string(script) +
                      "/versions lists them");
  }
  return *found;
}

std::vector<Registry::Rollback> Registry::roll_back_aliases(
    const store::Tenant& tenant, std::string_view script, int64_t quarantined,
    const std::function<bool(int64_t)>& usable) {
  std::vector<Rollback> rollbacks;
  std::vector<store::Alias> concerned;
  for (auto& alias : store_.list_aliases(tenant.id, script)) {
    if (alias.auto_rollback && alias.version == quarantined) concerned.push_back(std::move(alias));
  }
  if (concerned.empty()) return rollbacks;
  std::map<int64_t, bool> can_serve;  // version → approved and usable
  std::optional<int64_t> highest_below;
  for (const auto& candidate : store_.list_versions(tenant.id, script)) {
    bool serves = candidate.version != quarantined &&
                  candidate.state == store::VersionState::approved && usable(candidate.version);
    can_serve[candidate.version] = serves;
    if (serves && candidate.version < quarantined)
      highest_below = std::max(highest_below.value_or(0), candidate.version);
  }
  for (auto& alias : concerned) {
    // The versions the alias pointed at before, most recent first: the one it left for the
    // quarantined version is the one its reviewer last trusted.
    std::optional<int64_t> target;
    for (const auto& change : store_.alias_history(tenant.id, script, alias.name, 1000)) {
      for (auto earlier : {std::optional<int64_t>(change.version), change.previous_version}) {
        if (earlier && can_serve[*earlier]) {
          target = earlier;
          break;
        }
      }
      if (target) break;
    }
    // An alias that never pointed elsewhere (or whose earlier versions cannot serve any more).
    if (!target) target = highest_below;
    if (!target) {
      rollbacks.push_back({std::move(alias), quarantined, std::nullopt});
      continue;
    }
    auto moved = store_.roll_back_alias(tenant.id, script, alias.name, quarantined, *target,
                                        store::now_ms());
    if (moved) rollbacks.push_back({std::move(*moved), quarantined, target});
  }
  return rollbacks;
}

store::ScriptVersion Registry::resolve_alias(const store::Tenant& tenant, std::string_view script,
                                             std::string_view alias, store::Alias* found_alias) {
  check_name("alias name", "alias", alias);
  auto found = store_.find_alias(tenant.id, script, alias);
  if (!found) {
    // Only on this path: listing the versions to tell "no script" from "no alias" costs a scan.
    require_script(tenant, script);
    throw Refusal(404, "not-found", "No such alias",
                  "script \"" + std::string(script) + "\" of tenant \"" + tenant.name +
                      "\" has no alias \"" + std::string(alias) + "\"",
                  "a reviewer sets one with PUT .../scripts/" + std::string(script) + "/aliases/" +
                      std::string(alias) + ", or invoke with ?version=N");
  }
  if (found_alias) *found_alias = *found;
  return version(tenant, script, found->version);
}

}  // namespace corral::registry

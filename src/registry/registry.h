// Scripts and their lifecycle: immutable versions published by a tenant's publishers, approved by
// its reviewers, deprecated or disabled, and named by aliases. Who may call what is the API's
// business; the registry enforces what is true whoever asks (a version is approved once, aliases
// point only at approved versions, nobody approves their own work unless the policy allows it).
//
// Governance comes from the policy in force, which the caller passes with each request (so one
// request is decided under one version of it, never half of two): the manifest may ask only for
// capabilities the tenant is granted; `signature_required` demands a valid signature
// (signature.h); `approval_required: false` approves a new version as it is published;
// `self_approval_allowed` lets a publisher approve their own version.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "invocation/executor.h"
#include "invocation/invocation.h"
#include "policy/policy.h"
#include "registry/signature.h"
#include "registry/validation.h"
#include "store/store.h"

namespace corral::registry {

// A request the registry turns down, with the HTTP status and problem type the API answers with.
struct Refusal : std::runtime_error {
  Refusal(int status, std::string slug, std::string title, const std::string& detail,
          std::string hint)
      : std::runtime_error(detail),
        status(status),
        slug(std::move(slug)),
        title(std::move(title)),
        hint(std::move(hint)) {}
  int status;
  std::string slug;
  std::string title;
  std::string hint;
  // Members added to the problem (an object), such as each capability refused and its rule.
  nlohmann::json extra = nlohmann::json::object();
};

// Who asks, as far as the registry cares: a token id and the person it was issued to.
struct Actor {
  std::string token_id;
  std::string subject;
};

// Called inside the store transaction that makes a change, so that what it records (the audit
// entry) commits with the change or not at all.
using RecordVersion = std::function<void(const store::ScriptVersion& version)>;

// What publish decided besides storing the version, for the caller's audit entries.
struct PublishDecisions {
  // The public key (base64) that verified the version's signature, recorded with the version;
  // nullopt when none was sent.
  std::optional<std::string> signed_by;
  // Set when the version was approved as it was published: the rule that made approval_required
  // false ("tenants.acme.governance.approval_required").
  std::optional<std::string> approved_by_rule;
};
using RecordPublished =
    std::function<void(const store::Published& published, const PublishDecisions& decisions)>;
// Told of the run that checked a new version's top level, whatever it ended in, so that the
// caller can charge its CPU to the tenant's quota.
using CheckRan = std::function<void(const InvocationResult& check)>;
using RecordAlias =
    std::function<void(const store::Alias& alias, std::optional<int64_t> previous_version)>;

// Who approved a version that the policy approved at publish (approval_required: false), in
// place of a token id.
inline constexpr const char* kApprovedByPolicy = "policy";

struct RegistryOptions {
  // Deprecated (corrald --allow-self-approval): lets every tenant's publishers approve their own
  // versions whatever the policy says. The policy's self_approval_allowed is the way to say it.
  bool allow_self_approval_for_all = false;
  // Limits of the run that checks a new version defines handle (its main chunk runs once); the
  // tenant's own limits in the policy lower them.
  Limits probe_limits;
};

class Registry {
 public:
  Registry(store::Store& store, Executor& executor, RegistryOptions options);

  // Validates (compiles, defines handle, sizes, manifest) and stores a new version, or returns the
  // version with the same source. In this order, each before anything later is looked at:
  //   name and manifest malformed                                 → InvalidInput (400)
  //   signature_required and no signature                         → Refusal 403 signature-required
  //   a signature that does not verify (see verify_signature)     → Refusal 403 signature-invalid
  //   capabilities in the manifest the tenant is not granted      → Refusal 403
  //                                       capability-not-granted, naming each and its rule
  //   source that does not compile or define handle               → InvalidInput (400)
  // A signature sent when signature_required is false is verified all the same (a signature that
  // fails is refused, never ignored); one sent for a tenant with no public keys is refused (Refusal
  // 422 signature-unverifiable), since nothing could check it. The key that verified it is
  // recorded with the new version (ScriptVersion::signed_by). The new version is pending, or
  // approved at once (by kApprovedByPolicy) when the tenant's approval_required is false.
  // Republishing a source returns its version as it is; the checks above apply to it too. A new
  // version past the tenant's quotas.versions or quotas.version_bytes is refused (Refusal 429
  // storage-quota-exceeded, naming the quota), before its top level runs. That run is under the
  // tenant's limits (the lower of them and probe_limits), and `check_ran` is told of it.
  store::Published publish(const store::Tenant& tenant, std::string_view script,
                           std::string_view source, const nlohmann::json& manifest,
                           const std::optional<Signature>& signature, const policy::Policy& policy,
                           const Actor& publisher, const RecordPublished& record,
                           const CheckRan& check_ran = {});

  // pending → approved. Refuses a version that is not pending, and one whose publisher is the
  // approver unless the tenant's self_approval_allowed (or allow_self_approval_for_all) says so.
  store::ScriptVersion approve(const store::Tenant& tenant, std::string_view script,
                               int64_t version, const policy::Policy& policy, const Actor& reviewer,
                               const RecordVersion& record);
  // approved → deprecated: still served, flagged in responses.
  store::ScriptVersion deprecate(const store::Tenant& tenant, std::string_view script,
                                 int64_t version, const Actor& reviewer,
                                 const RecordVersion& record);
  // any → disabled: refused from now on, kept for the record.
  store::ScriptVersion disable(const store::Tenant& tenant, std::string_view script,
                               int64_t version, const Actor& actor, const RecordVersion& record);

  // Creates or moves an alias; only to an approved version. auto_rollback as store::Alias says. A
  // canary must be another approved version, with a weight from 1 to 99 percent.
  store::Alias set_alias(const store::Tenant& tenant, std::string_view script,
                         std::string_view alias, int64_t version, const Actor& actor,
                         const RecordAlias& record, bool auto_rollback = false,
                         std::optional<store::Canary> canary = {});

  // One alias an automatic rollback concerned: moved to `to`, or (nullopt) left where it was
  // because no approved version below `from` could take its place.
  struct Rollback {
    store::Alias alias;  // as it is now
    int64_t from = 0;
    std::optional<int64_t> to;
  };
  // Version `quarantined` of `script` has been quarantined: every alias with auto_rollback that
  // points at it moves back to the version it pointed at before (its history, most recent first,
  // the first that is approved and for which usable(number) holds; the caller excludes versions
  // that are quarantined too). An alias with no such earlier version moves to the highest such
  // version below the quarantined one. An alias a person moved meanwhile is left alone. Returns
  // what happened to each, for the audit trail.
  std::vector<Rollback> roll_back_aliases(const store::Tenant& tenant, std::string_view script,
                                          int64_t quarantined,
                                          const std::function<bool(int64_t)>& usable);

  // The version a request names, or Refusal 404 saying what does not exist.
  store::ScriptVersion version(const store::Tenant& tenant, std::string_view script,
                               int64_t version);
  // What an alias points at, or Refusal 404. `found`, when given, receives the alias itself.
  store::ScriptVersion resolve_alias(const store::Tenant& tenant, std::string_view script,
                                     std::string_view alias, store::Alias* found = nullptr);
  // The script exists (has at least one version), or Refusal 404.
  void require_script(const store::Tenant& tenant, std::string_view script);

  const RegistryOptions& options() const { return options_; }

 private:
  void check_defines_handle(const store::Tenant& tenant, std::string_view source,
                            const policy::Limits& tenant_limits, const CheckRan& check_ran);
  void check_storage_quota(const store::Tenant& tenant, size_t source_bytes,
                           const policy::Quotas& quotas);
  static void check_capabilities(const store::Tenant& tenant, const Manifest& manifest,
                                 const policy::TenantPolicy& rules, const policy::Policy& policy);
  static std::optional<std::string> check_signature(const store::Tenant& tenant,
                                                    std::string_view script, const Digest& digest,
                                                    const std::optional<Signature>& signature,
                                                    const policy::TenantPolicy& rules);
  bool same_person(const std::string& publisher_token_id, const Actor& approver);

  store::Store& store_;
  Executor& executor_;
  RegistryOptions options_;
};

// Parses a version number from a path or query ("3"); Refusal 400 if it is not a positive integer.
int64_t parse_version_number(std::string_view text);

}  // namespace corral::registry

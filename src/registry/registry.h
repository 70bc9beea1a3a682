// Scripts and their lifecycle: immutable versions published by a tenant's publishers, approved by
// its reviewers, deprecated or disabled, and named by aliases. Who may call what is the API's
// business; the registry enforces what is true whoever asks (a version is approved once, aliases
// point only at approved versions, nobody approves their own work unless the policy allows it).
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "invocation/executor.h"
#include "invocation/invocation.h"
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
};

// Who asks, as far as the registry cares: a token id and the person it was issued to.
struct Actor {
  std::string token_id;
  std::string subject;
};

// Called inside the store transaction that makes a change, so that what it records (the audit
// entry) commits with the change or not at all.
using RecordVersion = std::function<void(const store::ScriptVersion& version)>;
using RecordPublished = std::function<void(const store::Published& published)>;
using RecordAlias =
    std::function<void(const store::Alias& alias, std::optional<int64_t> previous_version)>;

struct RegistryOptions {
  bool forbid_self_approval = true;
  // Limits of the run that checks a new version defines handle (its main chunk runs once).
  Limits probe_limits;
};

class Registry {
 public:
  Registry(store::Store& store, Executor& executor, RegistryOptions options);

  // Validates (compiles, defines handle, sizes, manifest) and stores a new pending version, or
  // returns the version with the same source. Throws InvalidInput or Refusal.
  store::Published publish(const store::Tenant& tenant, std::string_view script,
                           std::string_view source, const nlohmann::json& manifest,
                           const Actor& publisher, const RecordPublished& record);

  // pending → approved. Refuses a version that is not pending, and (by default) one whose
  // publisher is the approver.
  store::ScriptVersion approve(const store::Tenant& tenant, std::string_view script,
                               int64_t version, const Actor& reviewer, const RecordVersion& record);
  // approved → deprecated: still served, flagged in responses.
  store::ScriptVersion deprecate(const store::Tenant& tenant, std::string_view script,
                                 int64_t version, const Actor& reviewer,
                                 const RecordVersion& record);
  // any → disabled: refused from now on, kept for the record.
  store::ScriptVersion disable(const store::Tenant& tenant, std::string_view script,
                               int64_t version, const Actor& actor, const RecordVersion& record);

  // Creates or moves an alias; only to an approved version.
  store::Alias set_alias(const store::Tenant& tenant, std::string_view script,
                         std::string_view alias, int64_t version, const Actor& actor,
                         const RecordAlias& record);

  // The version a request names, or Refusal 404 saying what does not exist.
  store::ScriptVersion version(const store::Tenant& tenant, std::string_view script,
                               int64_t version);
  // What an alias points at, or Refusal 404.
  store::ScriptVersion resolve_alias(const store::Tenant& tenant, std::string_view script,
                                     std::string_view alias);
  // The script exists (has at least one version), or Refusal 404.
  void require_script(const store::Tenant& tenant, std::string_view script);

  const RegistryOptions& options() const { return options_; }

 private:
  void check_defines_handle(const store::Tenant& tenant, std::string_view source);
  bool same_person(const std::string& publisher_token_id, const Actor& approver);

  store::Store& store_;
  Executor& executor_;
  RegistryOptions options_;
};

// Parses a version number from a path or query ("3"); Refusal 400 if it is not a positive integer.
int64_t parse_version_number(std::string_view text);

}  // namespace corral::registry

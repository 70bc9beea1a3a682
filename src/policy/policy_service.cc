#include "policy/policy_service.h"

#include <stdexcept>

namespace corral::policy {

namespace {

// An audit entry's reason stays readable, and bounded, however large the change: the whole
// document stays in the store, so the lines left out can always be recomputed.
constexpr size_t kMaxDiffLinesAudited = 50;
constexpr size_t kMaxReasonBytes = 8192;

std::string describe_change(std::string_view reason, int64_t from_version, int64_t to_version,
                            const std::vector<std::string>& diff) {
  std::string text = std::string(reason) + ": policy version " + std::to_string(to_version) +
                     " replaces version " + std::to_string(from_version);
  if (diff.empty()) return text + "; no resolved value changed";
  text += "; " + std::to_string(diff.size()) + (diff.size() == 1 ? " change: " : " changes: ");
  size_t shown = 0;
  for (const auto& line : diff) {
    if (shown == kMaxDiffLinesAudited || text.size() + line.size() > kMaxReasonBytes) break;
    text += (shown ? "; " : "") + line;
    ++shown;
  }
  if (shown < diff.size()) {
    text += "; … and " + std::to_string(diff.size() - shown) +
            " more (GET /v1/policy?version=N gives both documents)";
  }
  return text;
}

std::shared_ptr<const Snapshot> built_in() {
  return std::make_shared<const Snapshot>(
      Snapshot{.version = 0, .policy = Policy::safe_default(), .created_by = "built-in"});
}

}  // namespace

PolicyService::PolicyService(store::Store& store, audit::AuditTrail& audit)
    : store_(store), audit_(audit), current_(built_in()) {
  if (auto newest = store_.latest_policy_version()) {
    try {
      current_.store(std::make_shared<const Snapshot>(load(*newest)));
    } catch (const PolicyInvalid& invalid) {
      // Only a corrald whose rules became stricter than the one that stored the document gets
      // here. Running under the safe default instead would quietly change every tenant's rights.
      throw std::runtime_error(
          "policy version " + std::to_string(newest->version) +
          " in the store is not valid for this corrald: " + invalid.what() +
          "\nStart corrald with --policy FILE holding a corrected document, or run the corrald "
          "release that stored it");
    }
  }
}

std::shared_ptr<const Snapshot> PolicyService::current() const { return current_.load(); }

Snapshot PolicyService::load(const store::PolicyVersion& stored) const {
  auto now = current_.load();
  if (now->version == stored.version) return *now;
  return Snapshot{.version = stored.version,
                  .policy = Policy::parse(stored.document),
                  .created_by = stored.created_by,
                  .created_at = stored.created_at};
}

bool PolicyService::follow_store(std::string* problem) {
  auto newest = store_.latest_policy_version();
  if (!newest || newest->version <= current()->version) return false;
  try {
    publish(std::make_shared<const Snapshot>(load(*newest)));
    return true;
  } catch (const PolicyInvalid& invalid) {
    if (problem != nullptr) {
      *problem = "policy version " + std::to_string(newest->version) +
                 " is not valid for this corrald: " + invalid.what();
    }
    return false;
  }
}

void PolicyService::publish(std::shared_ptr<const Snapshot> snapshot) {
  auto seen = current_.load();
  while (seen->version < snapshot->version) {
    if (current_.compare_exchange_weak(seen, snapshot)) return;
  }
}

Accepted PolicyService::install(std::string_view yaml_text, std::string_view principal,
                                std::string_view action, std::string_view reason) {
  // Parsed before the transaction: validation can be slow, and must not hold the store.
  Policy accepted = Policy::parse(yaml_text);
  Accepted result;
  std::shared_ptr<const Snapshot> snapshot;
  store_.atomically([&] {
    // The version before is read inside the transaction, so the diff is against the version this
    // one really follows, even when another update (or another node) got in first.
    auto previous = store_.latest_policy_version();
    std::shared_ptr<const Snapshot> before;
    if (previous) {
      try {
        before = std::make_shared<const Snapshot>(load(*previous));
      } catch (const PolicyInvalid&) {
        before = current_.load();  // see the constructor; diff against what is in force here
      }
    } else {
      before = built_in();
    }
    result.diff = diff(before->policy, accepted);
    store::PolicyVersion stored =
        store_.insert_policy_version(yaml_text, principal, store::now_ms());
    audit_.record(principal, "", action, "/v1/policy?version=" + std::to_string(stored.version),
                  audit::Decision::allow,
                  describe_change(reason, before->version, stored.version, result.diff));
    snapshot = std::make_shared<const Snapshot>(Snapshot{.version = stored.version,
                                                         .policy = std::move(accepted),
                                                         .created_by = stored.created_by,
                                                         .created_at = stored.created_at});
  });
  publish(snapshot);
  result.snapshot = std::move(snapshot);
  return result;
}

Accepted PolicyService::update(std::string_view yaml_text, std::string_view principal) {
  return install(yaml_text, principal, "policy.update", "accepted a new document");
}

std::optional<Snapshot> PolicyService::version(int64_t number) const {
  if (number == 0) return *built_in();
  auto stored = store_.find_policy_version(number);
  if (!stored) return std::nullopt;
  return load(*stored);
}

std::vector<store::PolicyVersionSummary> PolicyService::versions() const {
  return store_.list_policy_versions();
}

Accepted PolicyService::rollback(int64_t to_version, std::string_view principal) {
  std::string document;
  if (to_version == 0) {
    document = Policy::safe_default_text();
  } else if (auto stored = store_.find_policy_version(to_version)) {
    document = stored->document;
  } else {
    auto newest = store_.latest_policy_version();
    throw store::NotFound("there is no policy version " + std::to_string(to_version) +
                          "; the versions are 0 (the built-in safe default) to " +
                          std::to_string(newest ? newest->version : 0));
  }
  return install(document, principal, "policy.rollback",
                 "rolled back to the document of version " + std::to_string(to_version));
}

Accepted PolicyService::load_at_startup(std::string_view yaml_text, std::string_view source_name) {
  return load_file(yaml_text, source_name, "at start-up");
}

Accepted PolicyService::load_file(std::string_view yaml_text, std::string_view source_name,
                                  std::string_view occasion) {
  Policy::parse(yaml_text);  // refuse an invalid file even when it equals the stored document
  auto newest = store_.latest_policy_version();
  if (newest && newest->document == yaml_text) return {.snapshot = current(), .diff = {}};
  return install(yaml_text, "bootstrap", "policy.update",
                 "loaded " + std::string(occasion) + " from " + std::string(source_name));
}

}  // namespace corral::policy

// The policy in force over a real SQLite store: numbered versions, an audit entry with the diff
// for each, rollback as a new version, what a restart finds, start-up loading that does not
// duplicate, and readers that never see a half-made snapshot while updates happen.
#include "policy/policy_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace {

namespace fs = std::filesystem;
using corral::policy::Policy;
using corral::policy::PolicyInvalid;
using corral::policy::PolicyService;

std::string with_fuel(int64_t fuel) {
  return "defaults:\n  limits:\n    fuel: " + std::to_string(fuel) + "\n";
}

constexpr const char* kAcmeKv = R"(defaults:
  limits: {fuel: 2000000}
tenants:
  acme:
    capabilities:
      kv: {}
)";

class PolicyServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("corral-policy-service-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    open();
  }
  void TearDown() override {
    audit_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }
  void open() {
    audit_.reset();
    store_ = corral::store::open_sqlite_store(dir_);
    audit_ = std::make_unique<corral::audit::AuditTrail>(*store_);
  }
  std::vector<corral::audit::Entry> policy_entries() {
    auto entries = audit_->query({.limit = 1000});
    std::erase_if(entries, [](const auto& e) { return !e.action.starts_with("policy."); });
    return entries;
  }

  fs::path dir_;
  std::unique_ptr<corral::store::Store> store_;
  std::unique_ptr<corral::audit::AuditTrail> audit_;
};

TEST_F(PolicyServiceTest, StartsWithTheSafeDefaultAsVersionZero) {
  PolicyService service(*store_, *audit_);
  auto current = service.current();
  ASSERT_NE(current, nullptr);
  EXPECT_EQ(current->version, 0);
  EXPECT_EQ(current->created_by, "built-in");
  EXPECT_EQ(current->policy.text(), Policy::safe_default_text());
  EXPECT_FALSE(current->policy.for_tenant("acme").grants("kv"));
  EXPECT_TRUE(service.versions().empty());
  ASSERT_TRUE(service.version(0));
  EXPECT_FALSE(service.version(1));
}

TEST_F(PolicyServiceTest, AcceptedDocumentsAreNumberedAndAuditedWithTheirDiff) {
  PolicyService service(*store_, *audit_);
  auto first = service.update(kAcmeKv, "tok1");
  EXPECT_EQ(first.snapshot->version, 1);
  EXPECT_EQ(first.snapshot->created_by, "tok1");
  EXPECT_GT(first.snapshot->created_at, 0);
  EXPECT_EQ(service.current()->version, 1);
  EXPECT_TRUE(service.current()->policy.for_tenant("acme").grants("kv"));
  EXPECT_NE(
      std::find(first.diff.begin(), first.diff.end(), "defaults.limits.fuel: 10000000 → 2000000"),
      first.diff.end())
      << ::testing::PrintToString(first.diff);

  auto second = service.update(with_fuel(3'000'000), "tok2");
  EXPECT_EQ(second.snapshot->version, 2);
  ASSERT_FALSE(second.diff.empty());

  auto entries = policy_entries();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].action, "policy.update");
  EXPECT_EQ(entries[0].principal, "tok1");
  EXPECT_EQ(entries[0].decision, "allow");
  EXPECT_NE(entries[0].reason.find("defaults.limits.fuel: 10000000 → 2000000"), std::string::npos)
      << entries[0].reason;
  EXPECT_NE(entries[1].reason.find("version 2 replaces version 1"), std::string::npos)
      << entries[1].reason;
  EXPECT_NE(entries[1].reason.find("tenants.acme: removed"), std::string::npos)
      << entries[1].reason;

  auto versions = service.versions();
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_EQ(versions[0].version, 2);  // newest first
  ASSERT_TRUE(service.version(1));
  EXPECT_EQ(service.version(1)->policy.text(), kAcmeKv);
}

TEST_F(PolicyServiceTest, AnInvalidDocumentChangesNothing) {
  PolicyService service(*store_, *audit_);
  service.update(kAcmeKv, "tok1");
  try {
    service.update("defaults:\n  limits:\n    fuel: -1\n    memory: 5\n", "tok1");
    FAIL() << "accepted";
  } catch (const PolicyInvalid& invalid) {
    ASSERT_EQ(invalid.problems().size(), 2u);
    EXPECT_EQ(invalid.problems()[0].path, "defaults.limits.fuel");
    EXPECT_EQ(invalid.problems()[0].line, 3);
    EXPECT_EQ(invalid.problems()[1].path, "defaults.limits.memory");
  }
  EXPECT_EQ(service.current()->version, 1);
  EXPECT_EQ(service.versions().size(), 1u);
  EXPECT_EQ(policy_entries().size(), 1u);
}

TEST_F(PolicyServiceTest, RollbackStoresTheOldDocumentAsANewVersion) {
  PolicyService service(*store_, *audit_);
  service.update(kAcmeKv, "tok1");
  service.update(with_fuel(3'000'000), "tok1");
  auto rolled = service.rollback(1, "tok2");
  EXPECT_EQ(rolled.snapshot->version, 3);
  EXPECT_EQ(rolled.snapshot->policy.text(), kAcmeKv);
  EXPECT_TRUE(service.current()->policy.for_tenant("acme").grants("kv"));
  EXPECT_NE(std::find(rolled.diff.begin(), rolled.diff.end(), "tenants.acme: added"),
            rolled.diff.end())
      << ::testing::PrintToString(rolled.diff);
  // History is untouched: version 2 is still there as it was.
  EXPECT_EQ(service.version(2)->policy.text(), with_fuel(3'000'000));
  auto entries = policy_entries();
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[2].action, "policy.rollback");
  EXPECT_EQ(entries[2].principal, "tok2");
  EXPECT_NE(entries[2].reason.find("version 1"), std::string::npos) << entries[2].reason;

  // Version 0 is the built-in default, and can be rolled back to as well.
  auto to_default = service.rollback(0, "tok2");
  EXPECT_EQ(to_default.snapshot->version, 4);
  EXPECT_EQ(to_default.snapshot->policy.text(), Policy::safe_default_text());

  EXPECT_THROW(service.rollback(99, "tok2"), corral::store::NotFound);
  EXPECT_EQ(service.current()->version, 4);
}

TEST_F(PolicyServiceTest, ARestartRestoresTheNewestVersion) {
  {
    PolicyService service(*store_, *audit_);
    service.update(kAcmeKv, "tok1");
    service.update(with_fuel(4'000'000), "tok1");
  }
  open();  // a new store connection and a new service: what a restarted corrald does
  PolicyService restarted(*store_, *audit_);
  auto current = restarted.current();
  EXPECT_EQ(current->version, 2);
  EXPECT_EQ(current->created_by, "tok1");
  EXPECT_EQ(current->policy.defaults().limits.fuel.value, 4'000'000);
}

TEST_F(PolicyServiceTest, LoadingTheSameFileAtStartUpStoresNothingNew) {
  {
    PolicyService service(*store_, *audit_);
    auto loaded = service.load_at_startup(kAcmeKv, "/etc/corral/policy.yaml");
    EXPECT_EQ(loaded.snapshot->version, 1);
    EXPECT_EQ(loaded.snapshot->created_by, "bootstrap");
  }
  open();
  {
    PolicyService service(*store_, *audit_);
    auto again = service.load_at_startup(kAcmeKv, "/etc/corral/policy.yaml");
    EXPECT_EQ(again.snapshot->version, 1);
    EXPECT_TRUE(again.diff.empty());
    EXPECT_EQ(service.versions().size(), 1u);
    // A different file is a new version, audited as loaded from it.
    auto changed = service.load_at_startup(with_fuel(5'000'000), "/etc/corral/policy.yaml");
    EXPECT_EQ(changed.snapshot->version, 2);
    EXPECT_THROW(service.load_at_startup("defaults: {limits: {fule: 1}}\n", "bad.yaml"),
                 PolicyInvalid);
    EXPECT_EQ(service.current()->version, 2);
  }
  auto entries = policy_entries();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].principal, "bootstrap");
  EXPECT_NE(entries[0].reason.find("/etc/corral/policy.yaml"), std::string::npos);
}

// Two writers race while readers take snapshots. Each snapshot a reader sees must be one whole
// stored version (its version number and its contents agree with the store afterwards), and the
// version in force never goes backwards, even when the writers finish out of order.
TEST_F(PolicyServiceTest, ReadersAlwaysSeeAWholeSnapshotWhileUpdatesHappen) {
  PolicyService service(*store_, *audit_);
  constexpr int kUpdatesPerWriter = 30;
  std::atomic<bool> done = false;
  std::atomic<int> backwards = 0;
  std::mutex seen_mutex;
  std::map<int64_t, std::set<int64_t>> seen;  // version → fuel values seen with it
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&] {
      int64_t last = 0;
      std::map<int64_t, std::set<int64_t>> mine;
      while (!done) {
        auto snapshot = service.current();
        mine[snapshot->version].insert(snapshot->policy.defaults().limits.fuel.value);
        if (snapshot->version < last) ++backwards;
        last = snapshot->version;
      }
      std::lock_guard lock(seen_mutex);
      for (auto& [version, fuels] : mine) seen[version].insert(fuels.begin(), fuels.end());
    });
  }
  std::atomic<int> failures = 0;
  std::vector<std::thread> writers;
  for (int w = 0; w < 2; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kUpdatesPerWriter; ++i) {
        try {
          service.update(with_fuel(1'000'000 + w * 1000 + i), "writer" + std::to_string(w));
        } catch (...) {
          ++failures;
        }
      }
    });
  }
  for (auto& writer : writers) writer.join();
  done = true;
  for (auto& reader : readers) reader.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(backwards, 0);
  EXPECT_EQ(service.current()->version, 2 * kUpdatesPerWriter);
  EXPECT_GT(seen.size(), 1u);
  for (const auto& [version, fuels] : seen) {
    auto stored = service.version(version);
    ASSERT_TRUE(stored) << version;
    EXPECT_EQ(fuels, std::set<int64_t>{stored->policy.defaults().limits.fuel.value})
        << "version " << version;
  }
}

}  // namespace

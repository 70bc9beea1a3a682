// Editing the database behind the trail's back, as someone with the file and the sqlite3 shell
// could, while the store stays open: verify names the first entry that no longer fits.
#include <gtest/gtest.h>

#include "audit/audit.h"
#include "store/sqlite_fixture.h"

namespace {

using namespace corral;
using audit::AuditTrail;
using audit::Decision;
using corral::testing::RawDb;
using corral::testing::TempDir;

class CorruptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 1; i <= 10; ++i) {
      trail_.record("tok-" + std::to_string(i), i % 2 ? "acme" : "globex", "script.publish",
                    "greet@" + std::to_string(i), Decision::allow, "entry " + std::to_string(i));
    }
    auto report = trail_.verify();
    ASSERT_TRUE(report.ok) << report.problem;
    // The schema's triggers stop corral's own code from rewriting entries; someone with the file
    // simply drops them first.
    raw_.exec("DROP TRIGGER audit_entries_no_update; DROP TRIGGER audit_entries_no_delete;");
  }

  void expect_bad(int64_t seq, const std::string& problem, int64_t checked) {
    auto report = trail_.verify(3);  // small pages, so that the walk crosses page boundaries
    EXPECT_FALSE(report.ok);
    EXPECT_EQ(report.first_bad_seq, seq);
    EXPECT_EQ(report.problem, problem);
    EXPECT_EQ(report.entries_checked, checked);
  }

  TempDir dir_;
  std::unique_ptr<store::Store> store_ = store::open_sqlite_store(dir_.path());
  AuditTrail trail_{*store_};
  RawDb raw_{dir_.path() / "corral.db"};
};

TEST_F(CorruptionTest, TheTriggersRefuseOrdinaryEdits) {
  TempDir other;
  auto store = store::open_sqlite_store(other.path());
  AuditTrail(*store).record("tok", "acme", "x", "t", Decision::allow, "");
  RawDb raw(other.path() / "corral.db");
  EXPECT_EQ(raw.text("SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND "
                     "tbl_name = 'audit_entries'"),
            "2");
  EXPECT_EQ(raw.try_exec("UPDATE audit_entries SET reason = 'x'"), "audit entries are append-only");
  EXPECT_EQ(raw.try_exec("DELETE FROM audit_entries"), "audit entries are append-only");
  EXPECT_TRUE(AuditTrail(*store).verify().ok);
}

TEST_F(CorruptionTest, AChangedReasonIsFound) {
  raw_.exec("UPDATE audit_entries SET reason = 'nothing to see' WHERE seq = 5");
  expect_bad(5, "entry 5: hash does not match its contents", 4);
}

TEST_F(CorruptionTest, AChangedTenantOrDecisionIsFound) {
  raw_.exec("UPDATE audit_entries SET decision = 'deny' WHERE seq = 7");
  expect_bad(7, "entry 7: hash does not match its contents", 6);
  raw_.exec("UPDATE audit_entries SET tenant = 'globex' WHERE seq = 3");
  expect_bad(3, "entry 3: hash does not match its contents", 2);
}

TEST_F(CorruptionTest, ADeletedRowIsFound) {
  raw_.exec("DELETE FROM audit_entries WHERE seq = 6");
  expect_bad(6, "sequence gap after entry 5: entry 6 is missing (the next one is 7)", 5);
}

TEST_F(CorruptionTest, ADeletedFirstRowIsFound) {
  raw_.exec("DELETE FROM audit_entries WHERE seq = 1");
  expect_bad(1, "sequence gap: entry 1 is missing (the next one is 2)", 0);
}

TEST_F(CorruptionTest, AChangedPrevHashIsFound) {
  raw_.exec("UPDATE audit_entries SET prev_hash = '" + std::string(64, 'f') + "' WHERE seq = 8");
  expect_bad(8, "entry 8: prev_hash does not match entry 7", 7);
}

TEST_F(CorruptionTest, AChangedGenesisIsFound) {
  raw_.exec("UPDATE audit_entries SET prev_hash = '" + std::string(64, '1') + "' WHERE seq = 1");
  expect_bad(1, "entry 1: prev_hash is not the genesis hash, but this is the first entry", 0);
}

// A forger who knows the encoding and rewrites an entry's hash to match its new contents still
// breaks the link from the entry after it.
TEST_F(CorruptionTest, ARecomputedHashIsFoundByTheNextEntry) {
  auto entries = trail_.query({.after_seq = 3, .limit = 1});
  ASSERT_EQ(entries.size(), 1u);
  store::AuditEntry forged = entries[0];
  forged.reason = "forged";
  forged.hash = audit::entry_hash(forged);
  raw_.exec("UPDATE audit_entries SET reason = 'forged', hash = '" + forged.hash +
            "' WHERE seq = 4");
  expect_bad(5, "entry 5: prev_hash does not match entry 4", 4);
}

TEST_F(CorruptionTest, NewEntriesAfterTamperingDoNotHideIt) {
  raw_.exec("UPDATE audit_entries SET reason = 'changed' WHERE seq = 2");
  for (int i = 0; i < 5; ++i) trail_.record("tok", "acme", "x", "t", Decision::allow, "");
  expect_bad(2, "entry 2: hash does not match its contents", 1);
}

}  // namespace

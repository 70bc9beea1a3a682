// Editing the database behind corrald's back: the audit chain notices and names the entry.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "registry/api_client.h"

namespace {

using corral::testing::ApiClient;
using corral::testing::CorraldProcess;

void exec(sqlite3* db, const char* sql) {
  char* error = nullptr;
  ASSERT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, &error), SQLITE_OK)
      << (error ? error : "") << " in " << sql;
}

TEST(AuditTamper, VerifyNamesTheEditedEntry) {
  CorraldProcess corrald;
  ApiClient api(corrald);
  auto tokens = api.tenant_with_tokens("acme");
  int64_t version = api.publish(tokens["publisher"], "acme", "s", corral::testing::kDoubler);
  api.approve(tokens["reviewer"], "acme", "s", version);
  auto clean = api.get(tokens["auditor"], "/v1/audit/verify");
  ASSERT_EQ(clean.status, 200) << clean;
  EXPECT_EQ(clean.body["ok"], true);
  int64_t total = clean.body["entries_checked"];
  ASSERT_GE(total, 6);

  // Someone with the file rewrites who approved the version: the triggers are only a guard
  // against corral's own mistakes, so they drop them first.
  auto approvals = api.get(api.admin(), "/v1/audit?action=version.approve");
  int64_t seq = approvals.body["entries"][0]["seq"];
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((corrald.data_dir() / "corral.db").c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  exec(db, "DROP TRIGGER audit_entries_no_update");
  exec(db,
       ("UPDATE audit_entries SET principal = 'someone-else' WHERE seq = " + std::to_string(seq))
           .c_str());
  sqlite3_close(db);

  auto report = api.get(api.admin(), "/v1/audit/verify");
  ASSERT_EQ(report.status, 200) << report;
  EXPECT_EQ(report.body["ok"], false);
  EXPECT_EQ(report.body["first_bad_seq"], seq);
  EXPECT_NE(report.body["problem"].get<std::string>().find(std::to_string(seq)), std::string::npos)
      << report;
  EXPECT_FALSE(report.body["hint"].get<std::string>().empty());
}

}  // namespace

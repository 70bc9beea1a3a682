// kill -9 corrald during a stream of publishes and approvals, start it again on the same data:
// every change it acknowledged is there, whole, and the audit chain still verifies.
#include <gtest/gtest.h>

#include <atomic>
#include <random>

#include "registry/api_client.h"

namespace {

using corral::testing::Answer;
using corral::testing::ApiClient;
using corral::testing::CorraldProcess;
namespace fs = std::filesystem;

std::string source_of(int i) { return "function handle() return " + std::to_string(i) + " end"; }

TEST(CrashRecovery, AcknowledgedChangesSurviveKillNine) {
  fs::path dir = fs::temp_directory_path() / ("corrald-crash-" + std::to_string(getpid()));
  fs::remove_all(dir);
  std::map<std::string, std::string> tokens;
  std::map<int64_t, std::string> published;  // acknowledged: version → source
  std::set<int64_t> approved;                // acknowledged approvals
  int attempts = 0;
  {
    CorraldProcess corrald({}, dir);
    ApiClient api(corrald);
    // The stream publishes as fast as corrald answers: not limited by the publish rate.
    Answer policy = api.put(api.admin(), "/v1/policy",
                            {{"document", "defaults: {quotas: {publishes_per_minute: 10000}}"}});
    ASSERT_EQ(policy.status, 201) << policy;
    tokens = api.tenant_with_tokens("acme");
    std::mt19937 random(std::random_device{}());
    int kill_after_ms = std::uniform_int_distribution<int>(0, 600)(random);
    // The kill comes at a random moment once the stream has got going (three publishes
    // acknowledged), not at a fixed time from now: a slow disk or a loaded machine may take
    // longer than that to acknowledge the first ones.
    std::atomic<int> acknowledged{0};
    std::thread killer([&] {
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (acknowledged < 3 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      std::this_thread::sleep_for(std::chrono::milliseconds(kill_after_ms));
      kill(corrald.pid(), SIGKILL);
    });
    try {
      for (int i = 0;; ++i) {
        ++attempts;
        Answer made =
            api.post(tokens["publisher"], "/v1/tenants/acme/scripts/stream/versions",
                     {{"source", source_of(i)}, {"manifest", corral::testing::manifest()}});
        if (made.status != 201) break;
        published[made.body["version"]] = source_of(i);
        ++acknowledged;
        Answer approval =
            api.post(tokens["reviewer"],
                     ApiClient::version_path("acme", "stream", made.body["version"]) + "/approve");
        if (approval.status != 200) break;
        approved.insert(made.body["version"].get<int64_t>());
      }
    } catch (const std::exception&) {
      // The connection died with corrald: what was not answered was not acknowledged.
    }
    killer.join();
    corrald.wait();
  }
  ASSERT_GT(published.size(), 2u) << "corrald died before the stream got going";

  CorraldProcess restarted({}, dir);
  ApiClient api(restarted);
  Answer versions = api.get(tokens["auditor"], "/v1/tenants/acme/scripts/stream/versions");
  ASSERT_EQ(versions.status, 200) << versions;
  std::map<int64_t, nlohmann::json> stored;
  for (const auto& version : versions.body["versions"]) stored[version["version"]] = version;
  for (const auto& [number, source] : published) {
    ASSERT_TRUE(stored.contains(number)) << "acknowledged version " << number << " is missing";
    EXPECT_EQ(stored[number]["source"], source);
    if (approved.contains(number)) {
      EXPECT_EQ(stored[number]["state"], "approved") << number;
      EXPECT_FALSE(stored[number]["approved_by"].is_null());
    }
  }
  // Numbering has no holes: at most one unacknowledged version beyond what was answered.
  EXPECT_LE(stored.size(), published.size() + 1);
  int64_t expected = 1;
  for (const auto& [number, version] : stored) EXPECT_EQ(number, expected++);

  Answer verify = api.get(api.admin(), "/v1/audit/verify");
  EXPECT_EQ(verify.body["ok"], true) << verify;
  nlohmann::json entries = nlohmann::json::array();
  for (std::string after = "0";;) {
    Answer page = api.get(api.admin(), "/v1/audit?tenant=acme&limit=1000&after=" + after);
    ASSERT_EQ(page.status, 200) << page;
    for (const auto& entry : page.body["entries"]) entries.push_back(entry);
    if (page.body["next_after"].is_null()) break;
    after = std::to_string(page.body["next_after"].get<int64_t>());
  }
  std::set<std::string> audited;
  for (const auto& entry : entries) {
    audited.insert(entry["action"].get<std::string>() + " " + entry["target"].get<std::string>());
  }
  for (const auto& [number, source] : published) {
    EXPECT_TRUE(
        audited.contains("version.publish " + ApiClient::version_path("acme", "stream", number)))
        << number;
  }
  for (int64_t number : approved) {
    EXPECT_TRUE(audited.contains("version.approve " +
                                 ApiClient::version_path("acme", "stream", number) + "/approve"))
        << number;
  }
  // None half-done: a change and its audit entry commit together, so whatever is stored (even the
  // one change that was made but not answered) has its entry, and every entry its change.
  size_t publish_entries = 0, approve_entries = 0;
  for (const auto& entry : entries) {
    publish_entries += entry["action"] == "version.publish";
    approve_entries += entry["action"] == "version.approve" && entry["decision"] == "allow";
  }
  size_t approved_stored = 0;
  for (const auto& [number, version] : stored) {
    EXPECT_TRUE(
        audited.contains("version.publish " + ApiClient::version_path("acme", "stream", number)))
        << number;
    if (version["state"] == "approved") {
      ++approved_stored;
      EXPECT_TRUE(audited.contains("version.approve " +
                                   ApiClient::version_path("acme", "stream", number) + "/approve"))
          << number;
    }
  }
  EXPECT_EQ(publish_entries, stored.size());
  EXPECT_EQ(approve_entries, approved_stored);
  // The server still works after recovery.
  Answer again = api.post(tokens["publisher"], "/v1/tenants/acme/scripts/stream/versions",
                          {{"source", "function handle() return 'after' end"},
                           {"manifest", corral::testing::manifest()}});
  EXPECT_EQ(again.status, 201) << again;
  std::printf("acknowledged %zu publishes and %zu approvals in %d attempts before kill -9\n",
              published.size(), approved.size(), attempts);
  fs::remove_all(dir);
}

}  // namespace

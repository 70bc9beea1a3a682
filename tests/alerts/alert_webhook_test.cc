// The operator's alert webhook on its own: which URLs it takes, the secret file it makes, and
// deliveries to a real loopback receiver (signed, tried again on 5xx, dropped on 4xx).
#include "alerts/alert_webhook.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "jobs/jobs.h"
#include "jobs/webhook_receiver.h"

namespace corral::alerts {
namespace {

namespace fs = std::filesystem;
using corral::testing::WebhookReceiver;
using nlohmann::json;

TEST(AlertWebhook, TakesOneHttpOrHttpsReceiverAndSaysWhatIsWrongWithAnythingElse) {
  EXPECT_EQ(AlertWebhook::url_problem("https://alerts.example.com/corral"), std::nullopt);
  EXPECT_EQ(AlertWebhook::url_problem("http://127.0.0.1:9000/hook"), std::nullopt);
  EXPECT_EQ(AlertWebhook::url_problem("http://[::1]:9000"), std::nullopt);
  for (const char* refused :
       {"ftp://alerts.example.com/x", "alerts.example.com/x",
        "https://user:secret@alerts.example.com/x", "https://*.example.com/x", "https:///x", ""}) {
    auto problem = AlertWebhook::url_problem(refused);
    ASSERT_TRUE(problem) << refused;
    EXPECT_NE(problem->find("write e.g. https://"), std::string::npos) << *problem;
  }
}

TEST(AlertWebhook, TheSecretIsMadeOncePrivateAndReadBackAfterwards) {
  fs::path dir = fs::temp_directory_path() / ("alert-secret-" + std::to_string(getpid()));
  fs::create_directories(dir);
  WebhookSecret made = open_or_create_webhook_secret(dir.string());
  EXPECT_TRUE(made.created);
  EXPECT_EQ(made.secret.size(), 64u);
  EXPECT_EQ(made.secret.find_first_not_of("0123456789abcdef"), std::string::npos);
  struct stat info {};
  ASSERT_EQ(stat(made.file.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600);
  WebhookSecret again = open_or_create_webhook_secret(dir.string());
  EXPECT_FALSE(again.created);
  EXPECT_EQ(again.secret, made.secret);

  std::ofstream(made.file, std::ios::trunc) << "\n";
  try {
    open_or_create_webhook_secret(dir.string());
    ADD_FAILURE() << "an empty secret file was accepted";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("alert-webhook.secret is empty"), std::string::npos)
        << error.what();
  }
  fs::remove_all(dir);
}

TEST(AlertWebhook, DeliversSignedTriesAgainAfter5xxAndDropsOn4xx) {
  WebhookReceiver receiver;
  receiver.answer("/alerts", {503, 200});
  receiver.answer("/gone", {404});
  {
    AlertWebhook flaky({.url = receiver.url("/alerts"),
                        .secret = "s3cret",
                        .attempts = 3,
                        .backoff = std::chrono::milliseconds(10)});
    flaky.send({{"id", "alert-1"}, {"event", "alert.raised"}, {"rule", "fuel"}});
    ASSERT_TRUE(receiver.wait_for(2, std::chrono::seconds(20)));
    AlertWebhook gone({.url = receiver.url("/gone"),
                       .secret = "s3cret",
                       .attempts = 3,
                       .backoff = std::chrono::milliseconds(10)});
    gone.send({{"id", "alert-2"}});
    ASSERT_TRUE(receiver.wait_for(3, std::chrono::seconds(20)));
    // A 404 is not tried again: nothing more comes however long we wait for it.
    EXPECT_FALSE(receiver.wait_for(4, std::chrono::milliseconds(300)));
  }
  auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 3u);
  int flaky_tries = 0;
  for (const auto& request : requests) {
    if (request.path != "/alerts") continue;
    ++flaky_tries;
    EXPECT_EQ(request.headers.at("corral-alert-id"), "alert-1");
    EXPECT_EQ(request.headers.at("corral-delivery-attempt"), std::to_string(flaky_tries));
    EXPECT_EQ(json::parse(request.body)["rule"], "fuel");
    // t=<seconds>,v1=<hmac>: the same signature as job webhooks.
    const std::string& signature = request.headers.at("corral-signature");
    auto t = signature.substr(2, signature.find(',') - 2);
    EXPECT_EQ(signature, jobs::signature_header("s3cret", std::stoll(t), request.body));
  }
  EXPECT_EQ(flaky_tries, 2);
}

}  // namespace
}  // namespace corral::alerts

// corrald's log events (api/events.h): one JSON line each with a stable "event" name, and the
// throttle that keeps a flood of one kind (quota refusals) to a line per key and window, with a
// count. Time is passed in, so nothing here waits; the window is an hour, so the throttle's own
// flushing thread never writes during a test.
#include "api/events.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <sstream>
#include <vector>

namespace corral::api {
namespace {

using nlohmann::json;
using Clock = ThrottledEvents::Clock;

class EventsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_ = spdlog::default_logger();
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    auto logger = std::make_shared<spdlog::logger>("events-test", sink);
    logger->set_pattern("%v");
    spdlog::set_default_logger(logger);
  }
  void TearDown() override { spdlog::set_default_logger(previous_); }

  std::vector<json> lines() const {
    std::vector<json> parsed;
    std::istringstream text(out_.str());
    for (std::string line; std::getline(text, line);) parsed.push_back(json::parse(line));
    return parsed;
  }

  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

TEST_F(EventsTest, AnEventIsOneJsonLineWithItsNameLevelMessageAndFields) {
  log_event(spdlog::level::warn, "breaker.open", "circuit breaker open",
            {{"tenant", "acme"}, {"version", 3}});
  auto logged = lines();
  ASSERT_EQ(logged.size(), 1u) << out_.str();
  EXPECT_EQ(logged[0]["event"], "breaker.open");
  EXPECT_EQ(logged[0]["level"], "warning");
  EXPECT_EQ(logged[0]["msg"], "circuit breaker open");
  EXPECT_EQ(logged[0]["tenant"], "acme");
  EXPECT_EQ(logged[0]["version"], 3);
  EXPECT_TRUE(logged[0]["time"].get<std::string>().ends_with("Z"));
}

TEST_F(EventsTest, AFloodOfOneKeyIsOneLineAtOnceAndOneCountPerWindow) {
  auto start = Clock::now();
  {
    ThrottledEvents events(std::chrono::hours(1), spdlog::level::warn, "quota.refused",
                           "invocations refused by a quota");
    for (int i = 0; i < 1000; ++i) {
      events.note("acme\nrate", {{"tenant", "acme"}, {"quota", "rate"}},
                  start + std::chrono::milliseconds(i));
    }
    events.note("other\nrate", {{"tenant", "other"}, {"quota", "rate"}}, start);
    // The first of each key at once; the rest of acme's wait for its window's end.
    auto logged = lines();
    ASSERT_EQ(logged.size(), 2u) << out_.str();
    EXPECT_EQ(logged[0]["event"], "quota.refused");
    EXPECT_EQ(logged[0]["tenant"], "acme");
    EXPECT_EQ(logged[0]["count"], 1);
    EXPECT_EQ(logged[1]["tenant"], "other");

    events.flush(start + std::chrono::minutes(30));
    EXPECT_EQ(lines().size(), 2u) << "a window not yet over was written: " << out_.str();
    events.flush(start + std::chrono::hours(1));
    logged = lines();
    ASSERT_EQ(logged.size(), 3u) << out_.str();
    EXPECT_EQ(logged[2]["tenant"], "acme");
    EXPECT_EQ(logged[2]["count"], 999);
    EXPECT_EQ(logged[2]["over_seconds"], 3600);
    // The next window: one more, counted and written at destruction.
    events.note("acme\nrate", {{"tenant", "acme"}, {"quota", "rate"}},
                start + std::chrono::hours(1) + std::chrono::seconds(1));
  }
  auto logged = lines();
  ASSERT_EQ(logged.size(), 4u) << out_.str();
  EXPECT_EQ(logged[3]["count"], 1);
}

}  // namespace
}  // namespace corral::api

// The refusal log's windows, with time moved by the test: the first refusal of a kind is written
// at once, the rest of its window are counted into one line when the window ends, kinds are
// counted apart, and nothing refused is left uncounted at stop.
#include "api/refusal_log.h"

#include <gtest/gtest.h>

#include <optional>
#include <vector>

namespace corral::api {
namespace {

using Clock = RefusalLog::Clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

class RefusalLogTest : public ::testing::Test {
 protected:
  RefusalLog log_{seconds(10), [this](nlohmann::json line) { lines_.push_back(std::move(line)); }};
  std::vector<nlohmann::json> lines_;
  Clock::time_point start_ = Clock::now();

  uint64_t counted(const std::string& kind) const {
    uint64_t total = 0;
    for (const auto& line : lines_)
      if (line["kind"] == kind) total += line["count"].get<uint64_t>();
    return total;
  }
};

TEST_F(RefusalLogTest, ASteadyFloodIsOneLinePerWindowAndEveryRefusalIsCounted) {
  std::optional<Clock::time_point> due;
  // 35 s of refusals, 100 a second, flushing whenever a count falls due, as the server's timer
  // does.
  for (int i = 0; i < 3500; ++i) {
    auto now = start_ + milliseconds(i * 10);
    if (due && now >= *due) due = log_.flush(now);
    if (auto asked = log_.note("queue-full", "/v1/run", 503, now); asked && !due) due = asked;
  }
  log_.flush(start_ + seconds(36), true);
  EXPECT_EQ(counted("queue-full"), 3500u);
  // The first at once, then one line per 10 s window: 35 s make 5 lines at most.
  ASSERT_GE(lines_.size(), 4u);
  EXPECT_LE(lines_.size(), 5u);
  EXPECT_EQ(lines_.front()["count"], 1);
  for (const auto& line : lines_) {
    EXPECT_EQ(line["level"], "warn");
    EXPECT_EQ(line["msg"], "requests refused");
    EXPECT_EQ(line["status"], 503);
    EXPECT_EQ(line["route"], "/v1/run");
  }
}

TEST_F(RefusalLogTest, KindsAreCountedApartAndARefusalAfterAQuietWindowIsWrittenAtOnce) {
  EXPECT_FALSE(log_.note("overloaded", "/v1/run", 503, start_));
  EXPECT_FALSE(log_.note("no-worker", "/v1/run", 503, start_));
  EXPECT_EQ(lines_.size(), 2u);
  auto due = log_.note("overloaded", "/v1/run", 503, start_ + seconds(1));
  ASSERT_TRUE(due);
  EXPECT_EQ(*due, start_ + seconds(10));
  // Not due yet: nothing written; due: the count of the window.
  EXPECT_FALSE(log_.flush(start_ + seconds(5)) == std::nullopt);
  EXPECT_EQ(lines_.size(), 2u);
  EXPECT_EQ(log_.flush(start_ + seconds(10)), std::nullopt);
  ASSERT_EQ(lines_.size(), 3u);
  EXPECT_EQ(lines_.back()["kind"], "overloaded");
  EXPECT_EQ(lines_.back()["count"], 1);
  // A quiet window later, the next refusal is written at once.
  EXPECT_FALSE(log_.note("overloaded", "/v1/tenants", 503, start_ + seconds(30)));
  ASSERT_EQ(lines_.size(), 4u);
  EXPECT_EQ(lines_.back()["route"], "/v1/tenants");
  EXPECT_EQ(counted("overloaded"), 3u);
  EXPECT_EQ(counted("no-worker"), 1u);
}

}  // namespace
}  // namespace corral::api

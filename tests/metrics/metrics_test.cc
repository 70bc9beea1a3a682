// The Prometheus exposition of corral's metrics: the figures it carries, and that promtool
// accepts it, both from the registry alone and from a live corrald after real invocations.
#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "api/corrald_process.h"

namespace {

using corral::Outcome;
using corral::metrics::Registry;

struct Checked {
  int status;
  std::string output;
};

// Feeds the text to `promtool check metrics` on stdin.
Checked promtool_check(const std::string& exposition) {
  auto path =
      std::filesystem::temp_directory_path() / ("corral-metrics-" + std::to_string(getpid()));
  std::ofstream(path) << exposition;
  std::string command = "promtool check metrics < " + path.string() + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  char chunk[512];
  while (size_t n = fread(chunk, 1, sizeof chunk, pipe)) output.append(chunk, n);
  int status = pclose(pipe);
  std::filesystem::remove(path);
  return {WEXITSTATUS(status), output};
}

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.starts_with(line + "\n");
}

TEST(Metrics, CountsInvocationsByOutcome) {
  Registry registry;
  registry.record_invocation(Outcome::ok, 0.002);
  registry.record_invocation(Outcome::ok, 0.004);
  registry.record_invocation(Outcome::limit_exceeded, 1.5);
  std::string text = registry.render();
  EXPECT_TRUE(has_line(text, "corral_invocations_total{outcome=\"ok\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "corral_invocations_total{outcome=\"limit_exceeded\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "corral_invocations_total{outcome=\"crashed\"} 0")) << text;
}

TEST(Metrics, LatencyHistogramIsCumulative) {
  Registry registry;
  registry.record_invocation(Outcome::ok, 0.0004);  // first bucket
  registry.record_invocation(Outcome::ok, 0.003);   // le=0.005
  registry.record_invocation(Outcome::ok, 20);      // only +Inf
  std::string text = registry.render();
  EXPECT_TRUE(has_line(text, "corral_invocation_duration_seconds_bucket{le=\"0.0005\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "corral_invocation_duration_seconds_bucket{le=\"0.0025\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "corral_invocation_duration_seconds_bucket{le=\"0.005\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "corral_invocation_duration_seconds_bucket{le=\"10\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "corral_invocation_duration_seconds_bucket{le=\"+Inf\"} 3")) << text;
  EXPECT_TRUE(has_line(text, "corral_invocation_duration_seconds_count 3")) << text;
  EXPECT_TRUE(has_line(text, "corral_invocation_duration_seconds_sum 20.0034")) << text;
}

TEST(Metrics, InFlightGaugeFollowsStartsAndFinishes) {
  Registry registry;
  registry.invocation_started();
  registry.invocation_started();
  registry.invocation_finished();
  EXPECT_TRUE(has_line(registry.render(), "corral_invocations_in_flight 1"));
}

TEST(Metrics, TheTokenCacheIsReadWhenRenderedAndReadsZeroWithoutOne) {
  Registry registry;
  EXPECT_TRUE(has_line(registry.render(), "corral_token_cache_lookups_total{result=\"hit\"} 0"));
  EXPECT_TRUE(has_line(registry.render(), "corral_token_cache_entries 0"));
  Registry::TokenCacheFigures figures{.hits = 7, .misses = 2, .entries = 1};
  registry.watch_token_cache([&figures] { return figures; });
  figures.hits = 9;
  std::string text = registry.render();
  EXPECT_TRUE(has_line(text, "corral_token_cache_lookups_total{result=\"hit\"} 9")) << text;
  EXPECT_TRUE(has_line(text, "corral_token_cache_lookups_total{result=\"miss\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "corral_token_cache_entries 1")) << text;
}

TEST(Metrics, TheWorkerPoolIsReadWhenRenderedAndReadsZeroWithoutOne) {
  Registry registry;
  EXPECT_TRUE(has_line(registry.render(), "corral_workers{state=\"busy\"} 0"));
  EXPECT_TRUE(has_line(registry.render(), "corral_worker_start_failures_total 0"));
  Registry::WorkerPoolFigures figures{.busy = 3,
                                      .idle = 5,
                                      .spare = 2,
                                      .starting = 1,
                                      .stopping = 4,
                                      .max_workers = 64,
                                      .memory_budget_bytes = 1 << 30,
                                      .memory_bytes = 12345678,
                                      .started = 40,
                                      .start_failures = 6,
                                      .retired = 7,
                                      .evicted = 8};
  registry.watch_worker_pool([&figures] { return figures; });
  figures.busy = 9;
  std::string text = registry.render();
  EXPECT_TRUE(has_line(text, "corral_workers{state=\"busy\"} 9")) << text;
  EXPECT_TRUE(has_line(text, "corral_workers{state=\"idle\"} 5")) << text;
  EXPECT_TRUE(has_line(text, "corral_workers{state=\"spare\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "corral_workers{state=\"starting\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "corral_workers{state=\"stopping\"} 4")) << text;
  EXPECT_TRUE(has_line(text, "corral_workers_max 64")) << text;
  EXPECT_TRUE(has_line(text, "corral_worker_memory_budget_bytes 1073741824")) << text;
  EXPECT_TRUE(has_line(text, "corral_worker_memory_bytes 12345678")) << text;
  EXPECT_TRUE(has_line(text, "corral_workers_started_total 40")) << text;
  EXPECT_TRUE(has_line(text, "corral_worker_start_failures_total 6")) << text;
  EXPECT_TRUE(has_line(text, "corral_workers_retired_total 7")) << text;
  EXPECT_TRUE(has_line(text, "corral_workers_evicted_total 8")) << text;
}

TEST(Metrics, HttpRequestsByRouteAndCode) {
  Registry registry;
  registry.record_http_request("/v1/run", 200);
  registry.record_http_request("/v1/run", 200);
  registry.record_http_request("other", 404);
  std::string text = registry.render();
  EXPECT_TRUE(has_line(text, "corral_http_requests_total{route=\"/v1/run\",code=\"200\"} 2"))
      << text;
  EXPECT_TRUE(has_line(text, "corral_http_requests_total{route=\"other\",code=\"404\"} 1")) << text;
}

TEST(Metrics, PromtoolAcceptsTheExposition) {
  Registry registry;
  registry.record_invocation(Outcome::script_error, 0.01);
  registry.record_http_request("/healthz", 200);
  auto checked = promtool_check(registry.render());
  EXPECT_EQ(checked.status, 0) << checked.output;
}

// promtool itself must catch a broken exposition, or the check above proves nothing.
TEST(Metrics, PromtoolRejectsABrokenExposition) {
  auto checked = promtool_check("# TYPE x counter\nx{le=\"1\" 1\n");
  EXPECT_NE(checked.status, 0) << checked.output;
}

TEST(Metrics, LiveCorraldServesValidMetrics) {
  corral::testing::CorraldProcess corrald;
  corral::testing::HttpClient client = corrald.client();
  client.post_json({{"source", "function handle(i) return i end"}, {"input", 1}});
  client.post_json({{"source", "function handle(i) error('no') end"}});
  auto response = client.request(boost::beast::http::verb::get, "/metrics");
  ASSERT_EQ(response.result_int(), 200);
  EXPECT_TRUE(
      response[boost::beast::http::field::content_type].starts_with("text/plain; version=0.0.4"));
  std::string text = response.body();
  EXPECT_TRUE(has_line(text, "corral_invocations_total{outcome=\"ok\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "corral_invocations_total{outcome=\"script_error\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "corral_invocation_duration_seconds_count 2")) << text;
  EXPECT_TRUE(has_line(text, "corral_http_requests_total{route=\"/v1/run\",code=\"422\"} 1"))
      << text;
  auto checked = promtool_check(text);
  EXPECT_EQ(checked.status, 0) << checked.output << text;
}

}  // namespace

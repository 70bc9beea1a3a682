// CPU lanes through a real corrald (--lanes, docs/operations.md "CPU lanes"): each lane's I/O and
// invocation threads are pinned to the lane's CPU, the kernel spreads connections over the lanes'
// listening sockets on the one port, and every lane answers; one lane pins nothing; by default
// there is a lane per CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/corrald_process.h"
#include "invocation/cpu_lane.h"

namespace corral::testing {
namespace {

using nlohmann::json;

// Quotas far above what the test asks, so that every run is admitted.
constexpr const char* kPolicy = R"(tenants:
  playground:
    quotas: {rate_per_second: 100000, burst: 100000, concurrency: 1000}
)";

// "0-2,5" → {0, 1, 2, 5}
std::set<int> parse_cpu_list(const std::string& list) {
  std::set<int> cpus;
  std::istringstream ranges(list);
  for (std::string range; std::getline(ranges, range, ',');) {
    auto dash = range.find('-');
    int first = std::stoi(range.substr(0, dash));
    int last = dash == std::string::npos ? first : std::stoi(range.substr(dash + 1));
    for (int cpu = first; cpu <= last; ++cpu) cpus.insert(cpu);
  }
  return cpus;
}

// Each of a process's threads by name, with the CPUs it may run on, read from /proc.
std::multimap<std::string, std::set<int>> threads_of(pid_t pid) {
  std::multimap<std::string, std::set<int>> threads;
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::string name;
    std::getline(std::ifstream(task.path() / "comm"), name);
    std::ifstream status(task.path() / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.starts_with("Cpus_allowed_list:")) {
        threads.emplace(name, parse_cpu_list(line.substr(line.find_first_not_of(" \t", 18))));
      }
    }
  }
  return threads;
}

std::vector<std::set<int>> cpus_of_threads_named(pid_t pid, const std::string& name) {
  std::vector<std::set<int>> found;
  for (const auto& [thread, cpus] : threads_of(pid)) {
    if (thread == name) found.push_back(cpus);
  }
  return found;
}

// corrald starts its I/O threads once it is listening, and each thread names and pins itself as
// it starts: wait (at most 10 s) until `count` threads of that name exist, then say where they
// may run.
std::vector<std::set<int>> cpus_of_threads_named(pid_t pid, const std::string& name, size_t count) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto found = cpus_of_threads_named(pid, name);
  while (found.size() < count && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    found = cpus_of_threads_named(pid, name);
  }
  return found;
}

std::string lane_series(int lane) {
  return "corral_lane_connections_total{lane=\"" + std::to_string(lane) + "\"}";
}

TEST(Lanes, EachLanesThreadsArePinnedToItsCpuAndEveryLaneServes) {
  const auto& allowed = allowed_cpus();
  if (allowed.size() < 2) GTEST_SKIP() << "needs two CPUs for two lanes";
  CorraldProcess corrald({"--lanes", "2", "--io-threads", "2", "--invocation-threads", "4"});
  for (int lane = 0; lane < 2; ++lane) {
    std::set<int> lane_cpu{allowed[lane]};
    std::string suffix = "-lane" + std::to_string(lane);
    EXPECT_EQ(cpus_of_threads_named(corrald.pid(), "http" + suffix, 1),
              std::vector<std::set<int>>({lane_cpu}))
        << "one I/O thread per lane (2 shared out over 2 lanes), on the lane's CPU";
    EXPECT_EQ(cpus_of_threads_named(corrald.pid(), "run" + suffix, 2),
              std::vector<std::set<int>>({lane_cpu, lane_cpu}))
        << "two invocation threads per lane (4 shared out over 2 lanes), on the lane's CPU";
  }

  auto admin = corrald.client();
  auto policy = admin.request(http::verb::put, "/v1/policy", json{{"document", kPolicy}}.dump());
  ASSERT_EQ(policy.result_int(), 201) << policy.body();

  // 32 connections send a run each before any answer is read: the kernel hashes each new
  // connection to a lane, so both lanes get some (all 32 in one lane: a chance of 2 in 2^32).
  std::vector<std::unique_ptr<HttpClient>> clients;
  for (int i = 0; i < 32; ++i) {
    clients.push_back(
        std::make_unique<HttpClient>(corrald.host(), corrald.port(), corrald.admin_token()));
    http::request<http::string_body> message(http::verb::post, "/v1/run", 11);
    message.set(http::field::host, "127.0.0.1");
    message.set(http::field::authorization, "Bearer " + corrald.admin_token());
    message.set(http::field::content_type, "application/json");
    json run = {{"source", "function handle(input) return {n = input.n * 2} end"},
                {"input", {{"n", i}}}};
    message.body() = run.dump();
    message.prepare_payload();
    http::write(clients.back()->socket(), message);
  }
  for (int i = 0; i < 32; ++i) {
    auto answer = clients[i]->read_response();
    ASSERT_EQ(answer.result_int(), 200) << answer.body();
    EXPECT_EQ(json::parse(answer.body())["output"]["n"], 2 * i);
  }
  double lane_0 = corrald.metric(lane_series(0)), lane_1 = corrald.metric(lane_series(1));
  EXPECT_GT(lane_0, 0);
  EXPECT_GT(lane_1, 0);
  // The 32 runs, the admin's connection, and the metric reads' own connections.
  EXPECT_GE(lane_0 + lane_1, 33);
  EXPECT_EQ(corrald.metric(lane_series(2)), -1) << "there are only two lanes";
}

TEST(Lanes, OneLanePinsNothing) {
  const auto& allowed = allowed_cpus();
  CorraldProcess corrald({"--lanes", "1", "--invocation-threads", "3"});
  std::set<int> every_cpu(allowed.begin(), allowed.end());
  EXPECT_EQ(cpus_of_threads_named(corrald.pid(), "http-lane0", 1),
            std::vector<std::set<int>>({every_cpu}));
  EXPECT_EQ(cpus_of_threads_named(corrald.pid(), "run-lane0", 3),
            std::vector<std::set<int>>({every_cpu, every_cpu, every_cpu}));
  EXPECT_TRUE(cpus_of_threads_named(corrald.pid(), "http-lane1").empty());
  auto answer = corrald.client().post_json({{"source", "function handle() return 1 end"}});
  EXPECT_EQ(answer.result_int(), 200) << answer.body();
  EXPECT_GE(corrald.metric(lane_series(0)), 1);
  EXPECT_EQ(corrald.metric(lane_series(1)), -1);
}

// Lanes share their port with SO_REUSEPORT, which would let a second corrald of the same user
// join it and take half the connections: a second corrald on a port in use must fail instead.
TEST(Lanes, ASecondCorraldOnTheSamePortRefusesToStart) {
  CorraldProcess first({"--lanes", "2"});
  fs::path data = first.directory() / "second-data";
  // Under `timeout`: a corrald that did start would otherwise serve until the test timed out.
  std::string command = "timeout 10 " + std::string(CORRALD_PATH) +
                        " --lanes 2 --listen 127.0.0.1:" + std::to_string(first.port()) +
                        " --data-dir " + data.string() + " --worker " + CORRAL_WORKER_PATH +
                        " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char chunk[512];
  while (size_t n = fread(chunk, 1, sizeof chunk, pipe)) output.append(chunk, n);
  EXPECT_EQ(WEXITSTATUS(pclose(pipe)), 1) << output;
  EXPECT_NE(output.find("cannot listen on 127.0.0.1:" + std::to_string(first.port())),
            std::string::npos)
      << output;
  EXPECT_NE(output.find("pick another --listen address"), std::string::npos) << output;
  // The first still has the port to itself.
  auto answer = first.client().request(http::verb::get, "/healthz");
  EXPECT_EQ(answer.result_int(), 200);
}

TEST(Lanes, ByDefaultThereIsALanePerCpuButNoMoreThanInvocationThreads) {
  const auto& allowed = allowed_cpus();
  CorraldProcess corrald({"--invocation-threads", "4"});
  size_t lanes = std::min<size_t>(allowed.size(), 4);
  for (size_t lane = 0; lane < lanes; ++lane) {
    std::set<int> expected =
        lanes > 1 ? std::set<int>{allowed[lane]} : std::set<int>(allowed.begin(), allowed.end());
    EXPECT_EQ(cpus_of_threads_named(corrald.pid(), "http-lane" + std::to_string(lane), 1),
              std::vector<std::set<int>>({expected}))
        << "lane " << lane;
  }
  EXPECT_TRUE(cpus_of_threads_named(corrald.pid(), "http-lane" + std::to_string(lanes)).empty());
}

TEST(Lanes, OneInvocationThreadMeansOneLaneByDefault) {
  const auto& allowed = allowed_cpus();
  CorraldProcess corrald({"--invocation-threads", "1"});
  EXPECT_EQ(cpus_of_threads_named(corrald.pid(), "http-lane0", 1),
            std::vector<std::set<int>>({std::set<int>(allowed.begin(), allowed.end())}));
  EXPECT_EQ(cpus_of_threads_named(corrald.pid(), "run-lane0", 1).size(), 1u);
  EXPECT_TRUE(cpus_of_threads_named(corrald.pid(), "http-lane1").empty());
}

}  // namespace
}  // namespace corral::testing

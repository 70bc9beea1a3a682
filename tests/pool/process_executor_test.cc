// The supervisor side of a worker: deadlines enforced by killing, deaths and protocol errors
// reported as `crashed`, damaged workers retired, healthy ones reused without leaking state.
#include "pool/process_executor.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "fake_worker.h"

namespace corral {
namespace {

InvocationRequest request_for(const std::string& source, nlohmann::json limits = nullptr) {
  InvocationRequest request;
  request.invocation_id = new_invocation_id();
  request.source = source;
  request.input = nlohmann::json::object();
  request.limits = LimitsPolicy{}.resolve(limits);
  return request;
}

ProcessExecutor real_executor() { return ProcessExecutor({.worker_path = CORRAL_WORKER_PATH}); }

TEST(ProcessExecutor, RunsAScriptInAWorker) {
  auto executor = real_executor();
  auto result = executor.run(request_for("function handle() return {pid_free = true} end"));
  ASSERT_EQ(result.outcome, Outcome::ok) << to_json(result).dump();
  EXPECT_EQ(result.output["pid_free"], true);
}

TEST(ProcessExecutor, ReusesHealthyWorkersWithoutLeakingState) {
  auto executor = real_executor();
  auto first =
      executor.run(request_for("leaked = 'secret' function handle() string.x = 1 return 1 end"));
  ASSERT_EQ(first.outcome, Outcome::ok);
  auto failing = executor.run(request_for("function handle() error('fine') end"));
  EXPECT_EQ(failing.outcome, Outcome::script_error);
  auto second =
      executor.run(request_for("function handle() return {leaked == nil, string.x == nil} end"));
  ASSERT_EQ(second.outcome, Outcome::ok);
  EXPECT_EQ(second.output, nlohmann::json({true, true}));
  EXPECT_EQ(executor.workers_started(), 1u);  // same process all along: isolation is per state
}

TEST(ProcessExecutor, RetiresAWorkerAfterALimit) {
  auto executor = real_executor();
  auto limited =
      executor.run(request_for("function handle() while true do end end", {{"fuel", 10000}}));
  EXPECT_EQ(limited.outcome, Outcome::limit_exceeded);
  auto next = executor.run(request_for("function handle() return 1 end"));
  EXPECT_EQ(next.outcome, Outcome::ok);
  EXPECT_EQ(executor.workers_started(), 2u);
}

TEST(ProcessExecutor, KillsALongCCallAtTheDeadline) {
  auto executor = real_executor();
  auto started = std::chrono::steady_clock::now();
  auto result = executor.run(request_for(
      "function handle() return string.find(string.rep('a', 40000), '.-.-.-.-.-.-.-.-b') end",
      {{"timeout_ms", 200}}));
  auto elapsed = std::chrono::steady_clock::now() - started;
  ASSERT_EQ(result.outcome, Outcome::limit_exceeded) << to_json(result).dump();
  EXPECT_EQ(result.limit, LimitKind::wall_time);
  EXPECT_EQ(result.allowed, 200);
  EXPECT_GE(result.used, 200);
  EXPECT_LT(elapsed, std::chrono::milliseconds(1500));
  EXPECT_EQ(executor.run(request_for("function handle() return 2 end")).outcome, Outcome::ok);
}

TEST(ProcessExecutor, ReportsAWorkerThatExits) {
  // It exits at once: a crash if the invocation reached it first, and otherwise (it was gone
  // before, and so was the worker the run was given next) a run turned away, as the script never
  // ran. Which comes first is the kernel's choice; either way the exit is reported.
  FakeWorker fake("exit", "exit 7");
  ProcessExecutor executor({.worker_path = fake.path()});
  auto result = executor.run(request_for("function handle() end"));
  EXPECT_TRUE(result.outcome == Outcome::crashed || result.outcome == Outcome::rejected)
      << to_json(result).dump();
  EXPECT_NE(result.message.find("exited with status 7"), std::string::npos) << result.message;
}

TEST(ProcessExecutor, ReportsAWorkerKilledByASignal) {
  FakeWorker fake("segv", "head -c 8 <&3 >/dev/null; kill -11 $$");
  ProcessExecutor executor({.worker_path = fake.path()});
  auto result = executor.run(request_for("function handle() end"));
  EXPECT_EQ(result.outcome, Outcome::crashed);
  EXPECT_NE(result.message.find("signal 11 (SIGSEGV)"), std::string::npos) << result.message;
}

TEST(ProcessExecutor, RetiresAWorkerThatSendsGarbage) {
  FakeWorker fake("garbage", "printf 'GARBAGE!' >&3; exec sleep 5");
  ProcessExecutor executor({.worker_path = fake.path()});
  auto result = executor.run(request_for("function handle() end"));
  EXPECT_EQ(result.outcome, Outcome::crashed);
  EXPECT_NE(result.message.find("malformed frame (bad frame magic)"), std::string::npos)
      << result.message;
}

TEST(ProcessExecutor, RetiresAWorkerThatAnnouncesAHugeFrame) {
  FakeWorker fake("huge", "printf 'CR\\001\\002\\377\\377\\377\\377' >&3; exec sleep 5");
  ProcessExecutor executor({.worker_path = fake.path()});
  auto result = executor.run(request_for("function handle() end"));
  EXPECT_EQ(result.outcome, Outcome::crashed);
  EXPECT_NE(result.message.find("exceeds the maximum"), std::string::npos) << result.message;
}

TEST(ProcessExecutor, RetiresAWorkerThatSendsAForgedResult) {
  FakeWorker fake("forged", "printf 'CR\\001\\002\\000\\000\\000\\002{}' >&3; exec sleep 5");
  ProcessExecutor executor({.worker_path = fake.path()});
  auto result = executor.run(request_for("function handle() end"));
  EXPECT_EQ(result.outcome, Outcome::crashed);
  EXPECT_NE(result.message.find("invalid result (missing field 'outcome')"), std::string::npos)
      << result.message;
}

TEST(ProcessExecutor, RetiresAWorkerThatClaimsItsRunWasRejected) {
  // `rejected` does not count against a version in its circuit breaker: a compromised worker
  // that could claim it would hide its crashes.
  const std::string payload =
      R"({"outcome":"rejected","invocation_id":"x","error":{"message":"busy"},"logs":[],)"
      R"("stats":{"fuel_used":0,"memory_peak_bytes":0,"wall_ms":0,"cpu_ms":0}})";
  std::string frame = "CR\\001\\002\\000\\000";
  for (int shift : {8, 0}) {
    char octal[8];
    std::snprintf(octal, sizeof octal, "\\%03o",
                  static_cast<unsigned>((payload.size() >> shift) & 0xff));
    frame += octal;
  }
  FakeWorker fake("rejecting", "printf '" + frame + payload + "' >&3; exec sleep 5");
  ProcessExecutor executor({.worker_path = fake.path()});
  auto result = executor.run(request_for("function handle() end"));
  EXPECT_EQ(result.outcome, Outcome::crashed);
  EXPECT_NE(result.message.find("a worker never reports the outcome rejected"), std::string::npos)
      << result.message;
}

// The supervisor reads a worker's result with the parser every untrusted JSON goes through
// (issue 24, item 10): a key given twice or a number past a double retires the worker, however
// well-formed the rest, rather than being read one way here and another by a client.
TEST(ProcessExecutor, RetiresAWorkerWhoseResultHasAKeyTwiceOrANumberPastADouble) {
  InvocationRequest request = request_for("function handle() end");
  auto frame_of = [](const std::string& payload) {
    std::string frame = "CR\\001\\002\\000\\000";
    for (int shift : {8, 0}) {
      char octal[8];
      std::snprintf(octal, sizeof octal, "\\%03o",
                    static_cast<unsigned>((payload.size() >> shift) & 0xff));
      frame += octal;
    }
    return frame + payload;
  };
  const std::string stats =
      R"("logs":[],"stats":{"fuel_used":0,"memory_peak_bytes":0,"wall_ms":0,"cpu_ms":0}})";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"outcome":"ok","invocation_id":")" + request.invocation_id +
           R"(","output":{"role":"admin","role":"invoker"},)" + stats,
       "\"role\" appears twice"},
      {R"({"outcome":"ok","invocation_id":")" + request.invocation_id +
           R"(","output":{"amount":1e309},)" + stats,
       "outside the range of a double"},
  };
  for (const auto& [payload, says] : cases) {
    FakeWorker fake("strict-json", "printf '" + frame_of(payload) + "' >&3; exec sleep 5");
    ProcessExecutor executor({.worker_path = fake.path()});
    auto result = executor.run(request);
    EXPECT_EQ(result.outcome, Outcome::crashed) << payload;
    EXPECT_NE(result.message.find("invalid result"), std::string::npos) << result.message;
    EXPECT_NE(result.message.find(says), std::string::npos) << result.message;
  }
}

TEST(ProcessExecutor, KillsAWorkerThatNeverAnswers) {
  FakeWorker fake("silent", "exec sleep 30");
  ProcessExecutor executor({.worker_path = fake.path()});
  auto started = std::chrono::steady_clock::now();
  auto result = executor.run(request_for("function handle() end", {{"timeout_ms", 100}}));
  EXPECT_EQ(result.outcome, Outcome::limit_exceeded);
  EXPECT_EQ(result.limit, LimitKind::wall_time);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
}

TEST(ProcessExecutor, ReportsAMissingWorkerBinary) {
  ProcessExecutor executor({.worker_path = "/nonexistent/corral-worker"});
  auto result = executor.run(request_for("function handle() end"));
  EXPECT_EQ(result.outcome, Outcome::rejected) << "the script never ran: " << result.message;
  EXPECT_NE(result.message.find("/nonexistent/corral-worker"), std::string::npos);
}

TEST(ProcessExecutor, AWorkerOutlivesTheThreadThatNeededIt) {
  // A worker's parent-death signal fires when the thread that started it ends; an idle worker
  // started for a caller's thread must still serve once that thread is gone.
  auto executor = real_executor();
  std::thread first_caller([&] {
    EXPECT_EQ(executor.run(request_for("function handle() return 1 end")).outcome, Outcome::ok);
  });
  first_caller.join();
  auto result = executor.run(request_for("function handle() return 2 end"));
  EXPECT_EQ(result.outcome, Outcome::ok) << result.message;
  EXPECT_EQ(result.output, 2);
  EXPECT_EQ(executor.workers_started(), 1u);
}

TEST(ProcessExecutor, ServesConcurrentCallers) {
  auto executor = real_executor();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        auto result = executor.run(
            request_for("function handle(input) return " + std::to_string(t * 100 + i) + " end"));
        if (result.outcome == Outcome::ok && result.output == t * 100 + i) ++ok;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(ok.load(), 40);
}

}  // namespace
}  // namespace corral

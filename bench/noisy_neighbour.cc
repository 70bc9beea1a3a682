// corral-noisy-neighbour-bench: does one tenant's flood slow another tenant down? (issue 6)
//
// Starts a real corrald on 127.0.0.1 (the one built with this tree), sets up two tenants and
// measures, over HTTP keep-alive:
//   1. B alone: tenant "quiet" invokes a small JSON transformation at --quiet-rate per second
//      (paced: each request starts at its slot, or at once if the previous answer was late);
//   2. B under A's flood: the same while tenant "noisy" floods with --flood-connections
//      connections (at nice 19, since they share the machine with corrald) sending a CPU-heavy
//      script (about --burn-ms of CPU per run) back to back,
//      ignoring Retry-After, far over its quotas (rate 5/s, burst 5, concurrency 1, as acme in
//      examples/policy.yaml plus a concurrency limit);
//   3. B alone again, so that drift of the machine during the run shows.
// With --tenants N, N more tenants are set up first, each with its own token and script, each run
// once so that its worker waits idle in the pool, and invoked round-robin at --tenants-rate per
// second in all, through every phase: the node of a platform with many tenants, most of them
// invoking now and then.
// Prints a markdown table: B's p50/p99 in each phase, the ratio of p99 under flood to alone (the
// worse of the two alone phases is the reference), and how the noisy tenant was answered.
//
// Usage: corral-noisy-neighbour-bench [--seconds 10] [--quiet-rate 20] [--flood-connections 16]
//                                     [--flood-rate 0] [--burn-ms 200] [--invocation-threads 4]
//                                     [--fresh-connections] [--corrald-arg FLAG]...
//                                     [--tenants 0] [--tenants-rate 50]
// --fresh-connections makes every flood request open a new connection (and close it after the
// answer), the flood that corrald's refusal hold (--refusal-hold-ms) cannot pace.
// --flood-rate paces the flood (requests per second from all its connections); 0 sends back to
// back, as fast as corrald answers. Each --corrald-arg is passed on to corrald (for example
// "--corrald-arg --token-cache-ms --corrald-arg 0"), to compare its settings under the same flood.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "api/corrald_process.h"
#include "api/load.h"
#include "setup.h"

namespace {

using corral::testing::CorraldProcess;
using corral::testing::HttpClient;
using corral::testing::LoadConnection;
using corral::testing::Reply;
using corral::testing::Tally;
using nlohmann::json;
namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;

struct Options {
  double seconds = 10;
  double quiet_rate = 20;
  int flood_connections = 16;
  double flood_rate = 0;  // requests per second from all flood connections; 0: back to back
  int burn_ms = 200;
  int invocation_threads = 4;
  bool fresh_connections = false;                   // each flood request on a new connection
  int tenants = 0;                                  // more tenants, each invoked now and then
  double tenants_rate = 50;                         // their invocations per second, in all
  std::vector<std::string> corrald_arguments = {};  // more flags for corrald, to compare settings
};

using corral::bench::call;
using corral::bench::fail;

// A tenant with a script "work" whose alias "live" points at an approved version of `source`;
// returns an invoker token.
std::string set_up_tenant(const CorraldProcess& corrald, const std::string& tenant,
                          const std::string& source) {
  HttpClient admin = corrald.client();
  call(admin, http::verb::post, "/v1/tenants", {{"name", tenant}}, 201);
  auto token = [&](const std::string& role) {
    return call(admin, http::verb::post, "/v1/tenants/" + tenant + "/tokens",
                {{"role", role}, {"subject", tenant + "-" + role}}, 201)["token"]
        .get<std::string>();
  };
  std::string publisher = token("publisher"), reviewer = token("reviewer"),
              invoker = token("invoker");
  std::string script = "/v1/tenants/" + tenant + "/scripts/work";
  HttpClient as_publisher(corrald.host(), corrald.port(), publisher);
  json version = call(as_publisher, http::verb::post, script + "/versions",
                      {{"source", source},
                       {"manifest",
                        {{"runtime", "lua5.4"},
                         {"capabilities", json::array()},
                         {"deterministic", false},
                         {"description", "bench"}}}},
                      201);
  int64_t number = version["version"];
  HttpClient as_reviewer(corrald.host(), corrald.port(), reviewer);
  call(as_reviewer, http::verb::post, script + "/versions/" + std::to_string(number) + "/approve",
       nullptr, 200);
  call(as_reviewer, http::verb::put, script + "/aliases/live", {{"version", number}}, 200);
  return invoker;
}

// B's requests at a steady pace for `seconds`; latencies of the 200s, and every answer tallied.
void quiet_phase(const CorraldProcess& corrald, const std::string& token, const Options& options,
                 Tally& tally) {
  LoadConnection connection(corrald.host(), corrald.port(), token);
  const std::string body =
      R"({"input": {"id": "o-1", "amount": 40, "currency": "EUR", "customer": "c-9", "items": 3}})";
  auto interval = std::chrono::duration<double>(1.0 / options.quiet_rate);
  auto start = Clock::now();
  auto end = start + std::chrono::duration<double>(options.seconds);
  for (int i = 0; Clock::now() < end; ++i) {
    auto slot = start + std::chrono::duration_cast<Clock::duration>(interval * i);
    std::this_thread::sleep_until(slot);
    tally.add(connection.post("/v1/tenants/quiet/scripts/work/invoke", body));
  }
}

std::string ms(double seconds) { return corral::bench::milliseconds(seconds, 2) + " ms"; }

// The many tenants of --tenants: set up from four threads (each publish runs the script's top
// level in a worker), each run once; returns their invoker tokens.
std::vector<std::string> set_up_many_tenants(const CorraldProcess& corrald, int count) {
  std::vector<std::string> tokens(static_cast<size_t>(count));
  std::atomic<int> next{0}, done{0};
  std::vector<std::thread> setters;
  for (int t = 0; t < 4; ++t) {
    setters.emplace_back([&] {
      for (int i; (i = next++) < count;) {
        std::string tenant = "t" + std::to_string(i);
        tokens[static_cast<size_t>(i)] =
            set_up_tenant(corrald, tenant, "function handle(input) return {n = input.n} end");
        Reply reply =
            LoadConnection(corrald.host(), corrald.port(), tokens[static_cast<size_t>(i)])
                .post("/v1/tenants/" + tenant + "/scripts/work/invoke", R"({"input": {"n": 1}})");
        if (reply.status != 200)
          fail("tenant " + tenant + "'s first run answered " + std::to_string(reply.status));
        if (int finished = ++done; finished % 250 == 0)
          std::fprintf(stderr, "set up %d of %d tenants\n", finished, count);
      }
    });
  }
  for (auto& setter : setters) setter.join();
  return tokens;
}

}  // namespace

int main(int argc, char** argv) {
  corral::bench::program_name = "corral-noisy-neighbour-bench";
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(arg + " needs a value");
      return argv[++i];
    };
    try {
      if (arg == "--seconds")
        options.seconds = std::stod(value());
      else if (arg == "--quiet-rate")
        options.quiet_rate = std::stod(value());
      else if (arg == "--flood-connections")
        options.flood_connections = std::stoi(value());
      else if (arg == "--flood-rate")
        options.flood_rate = std::stod(value());
      else if (arg == "--burn-ms")
        options.burn_ms = std::stoi(value());
      else if (arg == "--invocation-threads")
        options.invocation_threads = std::stoi(value());
      else if (arg == "--corrald-arg")
        options.corrald_arguments.push_back(value());
      else if (arg == "--fresh-connections")
        options.fresh_connections = true;
      else if (arg == "--tenants")
        options.tenants = std::stoi(value());
      else if (arg == "--tenants-rate")
        options.tenants_rate = std::stod(value());
      else {
        std::printf(
            "usage: corral-noisy-neighbour-bench [--seconds 10] [--quiet-rate 20] "
            "[--flood-connections 16]\n"
            "                                    [--flood-rate 0] [--burn-ms 200] "
            "[--invocation-threads 4]\n"
            "                                    [--fresh-connections] [--corrald-arg FLAG]...\n"
            "                                    [--tenants 0] [--tenants-rate 50]\n");
        return arg == "--help" || arg == "-h" ? 0 : 2;
      }
    } catch (const std::logic_error&) {
      fail(arg + " needs a number");
    }
  }
  if (options.seconds <= 0 || options.quiet_rate <= 0 || options.flood_connections < 1 ||
      options.burn_ms < 1 || options.invocation_threads < 1 || options.tenants < 0 ||
      options.tenants_rate <= 0) {
    fail("every option must be positive");
  }

  std::vector<std::string> arguments = {"--invocation-threads",
                                        std::to_string(options.invocation_threads)};
  arguments.insert(arguments.end(), options.corrald_arguments.begin(),
                   options.corrald_arguments.end());
  CorraldProcess corrald(arguments);
  {
    HttpClient admin = corrald.client();
    std::string policy =
        "defaults:\n  quotas:\n    rate_per_second: 1000\n    burst: 1000\n    concurrency: 100\n"
        "tenants:\n  noisy:\n    limits:\n      fuel: 1000000000\n      timeout_ms: 5000\n"
        "    quotas:\n      rate_per_second: 5\n      burst: 5\n      concurrency: 1\n";
    call(admin, http::verb::put, "/v1/policy", {{"document", policy}}, 201);
  }
  std::string quiet = set_up_tenant(
      corrald, "quiet",
      "function handle(input) input.total = input.amount * 1.2 input.seen = true return input end");
  std::string noisy =
      set_up_tenant(corrald, "noisy",
                    "function handle() local t = os.clock() while os.clock() - t < " +
                        std::to_string(options.burn_ms / 1000.0) + " do end return 'burned' end");
  std::vector<std::string> many = set_up_many_tenants(corrald, options.tenants);
  std::atomic<bool> many_stop{false};
  Tally many_tally;
  std::thread many_caller;
  if (!many.empty()) {
    many_caller = std::thread([&] {
      corral::testing::yield_cpu_to_corrald();
      auto interval = std::chrono::duration<double>(1.0 / options.tenants_rate);
      auto next = Clock::now();
      for (size_t i = 0; !many_stop; ++i) {
        size_t tenant = i % many.size();
        many_tally.add(LoadConnection(corrald.host(), corrald.port(), many[tenant])
                           .post("/v1/tenants/t" + std::to_string(tenant) + "/scripts/work/invoke",
                                 R"({"input": {"n": 2}})"));
        next += std::chrono::duration_cast<Clock::duration>(interval);
        std::this_thread::sleep_until(next);
      }
    });
  }
  // Warm both tenants' workers.
  Tally warm_up;
  quiet_phase(corrald, quiet, {.seconds = 1, .quiet_rate = options.quiet_rate}, warm_up);
  LoadConnection(corrald.host(), corrald.port(), noisy)
      .post("/v1/tenants/noisy/scripts/work/invoke", R"({"input": {}})");
  std::this_thread::sleep_for(std::chrono::seconds(1));  // the noisy tenant's burst refills

  Tally alone;
  quiet_phase(corrald, quiet, options, alone);

  std::atomic<bool> stop{false};
  Tally flood;
  std::vector<std::thread> flooders;
  for (int c = 0; c < options.flood_connections; ++c) {
    flooders.emplace_back([&] {
      corral::testing::yield_cpu_to_corrald();
      std::optional<LoadConnection> connection;
      auto interval = std::chrono::duration<double>(
          options.flood_rate > 0 ? options.flood_connections / options.flood_rate : 0);
      auto next = Clock::now();
      while (!stop) {
        if (!connection || options.fresh_connections)
          connection.emplace(corrald.host(), corrald.port(), noisy);
        flood.add(connection->post("/v1/tenants/noisy/scripts/work/invoke", R"({"input": {}})"));
        next += std::chrono::duration_cast<Clock::duration>(interval);
        std::this_thread::sleep_until(next);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // let the flood fill its queue
  Tally under_flood;
  quiet_phase(corrald, quiet, options, under_flood);
  stop = true;
  for (auto& thread : flooders) thread.join();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  Tally alone_after;
  quiet_phase(corrald, quiet, options, alone_after);
  many_stop = true;
  if (many_caller.joinable()) many_caller.join();
  double idle_workers = corrald.metric("corral_workers{state=\"idle\"}");

  auto p = [](const Tally& tally, double q) {
    return corral::testing::quantile(tally.ok_seconds(), q);
  };
  double reference = std::max(p(alone, 0.99), p(alone_after, 0.99));
  std::string more;
  for (const auto& argument : options.corrald_arguments) more += " " + argument;
  std::printf(
      "corrald --invocation-threads %d%s (queues: --tenant-queue-depth 64 --max-queued 1024); B "
      "at %.0f/s for %.0f s per phase; A: %d %sconnections, %s, ~%d ms of CPU per run, quota "
      "rate 5/s burst 5 concurrency 1\n\n",
      options.invocation_threads, more.c_str(), options.quiet_rate, options.seconds,
      options.flood_connections, options.fresh_connections ? "fresh (one request each) " : "",
      options.flood_rate > 0
          ? (std::to_string(static_cast<int>(options.flood_rate)) + " req/s in all").c_str()
          : "back to back",
      options.burn_ms);
  std::printf(
      "| phase | B requests | B non-200 | B p50 | B p99 | B p99 in the worker (stats.wall_ms) | "
      "A's answers |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- |\n");
  auto row = [&](const char* name, const Tally& tally, const std::string& a) {
    std::printf("| %s | %d | %d | %s | %s | %s | %s |\n", name, tally.total(),
                tally.total() - tally.count(200), ms(p(tally, 0.5)).c_str(),
                ms(p(tally, 0.99)).c_str(),
                ms(corral::testing::quantile(tally.ok_worker_seconds(), 0.99)).c_str(), a.c_str());
  };
  row("B alone", alone, "");
  row("B under A's flood", under_flood,
      flood.summary() + " (" + std::to_string(flood.refusals_without_retry_after()) +
          " refusals without Retry-After)");
  row("B alone again", alone_after, "");
  if (!many.empty()) {
    std::printf(
        "\n%d more tenants invoked round-robin at %.0f/s through every phase: %s; p50 %s, p99 "
        "%s; %.0f idle workers in the pool at the end\n",
        options.tenants, options.tenants_rate, many_tally.summary().c_str(),
        ms(p(many_tally, 0.5)).c_str(), ms(p(many_tally, 0.99)).c_str(), idle_workers);
  }
  std::printf(
      "\nB's p99 under flood / alone (worse of the two alone phases): %.2fx (target <= 2x)\n",
      reference > 0 ? p(under_flood, 0.99) / reference : 0.0);
  return 0;
}

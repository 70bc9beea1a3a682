// corral-audit-flood-bench: how much can a tenant, or a stranger, grow corral's database, and how
// much does that slow another tenant down? (issue 24, item 2)
//
// Starts a real corrald on 127.0.0.1 and two tenants. "quiet" invokes a script that reads and
// writes kv (so every run of it goes through the store) at --quiet-rate per second over one
// keep-alive connection; its p50/p99 are measured alone, then under each flood in turn, while the
// database (corral.db and its WAL) is measured before and after. The floods, each --seconds long
// on --flood-connections connections, back to back:
//   denied-capability  "noisy" runs a script that calls ctx.emit 16 times with a 4 MiB topic the
//                      policy does not allow (each call is denied and audited)
//   unauthenticated    GET /v1/tenants/quiet/scripts with no token
//   bad-token          the same with a well-formed token that does not exist
//   cross-tenant       noisy's token GETs quiet's script versions, another script each time
//   versions           noisy publishes 256 KiB scripts, a different one each time
//   events             noisy's script emits 16 events of 32 KiB to a topic it may use
// Prints a markdown table: the database's growth and quiet's p50/p99 per flood, with the ratio of
// p99 to quiet's p99 alone, and how the flood's requests were answered.
//
// Usage: corral-audit-flood-bench [--seconds 5] [--quiet-rate 50] [--flood-connections 2]
//                                 [--noisy-concurrency N]   (noisy's concurrency quota; default 4)
//                                 [--floods denied-capability,events]  (by the first word)
// The corrald run is this tree's, or the one named by CORRAL_BENCH_CORRALD with the corral-worker
// beside it (to measure an older build the same way: its policy must accept the document below,
// which names no new setting).
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "api/corrald_process.h"
#include "api/load.h"
#include "setup.h"

namespace {

using corral::testing::CorraldProcess;
using corral::testing::HttpClient;
using corral::testing::LoadConnection;
using corral::testing::Tally;
using nlohmann::json;
namespace http = boost::beast::http;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Options {
  double seconds = 5;
  double quiet_rate = 50;
  int flood_connections = 2;
  int noisy_concurrency = 0;      // 0: the built-in quota
  std::vector<std::string> only;  // --floods: the floods to run, by the first word of their name
};

// quiet's quotas are lifted so that only the flood can slow it; noisy has the built-in quotas, as
// a tenant of a platform would.
constexpr const char* kPolicy = R"(tenants:
  quiet:
    quotas: {rate_per_second: 100000, burst: 100000, concurrency: 64, cpu_ms_per_minute: 3600000}
    capabilities:
      kv: {scope: tenant}
  noisy:
    capabilities:
      emit: {topics: ["ok.*"]}
)";

constexpr const char* kQuietSource = R"(function handle(input, ctx)
  local seen = ctx.kv.get("seen:" .. input.id)
  ctx.kv.put("seen:" .. input.id, true)
  return {id = input.id, total = input.amount * 1.2, duplicate = seen ~= nil}
end)";

constexpr const char* kDeniedSource = R"(function handle(input, ctx)
  local topic = string.rep("t", 4 * 1024 * 1024 - 64)  -- the most a capability argument may be
  for i = 1, 16 do pcall(ctx.emit, topic, {i = i}) end
  return 1
end)";

constexpr const char* kEventsSource = R"(function handle(input, ctx)
  local payload = {blob = string.rep("e", 32 * 1024)}
  for i = 1, 16 do ctx.emit("ok.events", payload) end
  return 1
end)";

using corral::bench::fail;

json call(HttpClient& client, http::verb method, const std::string& target, const json& body,
          int expected) {
  // A script published again answers 200 with the version it has.
  return corral::bench::call(client, method, target, body, expected, expected == 201 ? 200 : 0);
}

json manifest(const json& capabilities) {
  return {{"runtime", "lua5.4"},
          {"capabilities", capabilities},
          {"deterministic", false},
          {"description", "bench"}};
}

struct Tenant {
  std::string publisher, reviewer, invoker;
};

Tenant make_tenant(const CorraldProcess& corrald, const std::string& name) {
  HttpClient admin = corrald.client();
  call(admin, http::verb::post, "/v1/tenants", {{"name", name}}, 201);
  auto token = [&](const std::string& role) {
    return call(admin, http::verb::post, "/v1/tenants/" + name + "/tokens",
                {{"role", role}, {"subject", name + "-" + role}}, 201)["token"]
        .get<std::string>();
  };
  return Tenant{token("publisher"), token("reviewer"), token("invoker")};
}

// Publishes `source` as script `script`, approves it and points its alias live at it.
void publish(const CorraldProcess& corrald, const std::string& tenant, const Tenant& tokens,
             const std::string& script, const std::string& source, const json& capabilities) {
  HttpClient as_publisher(corrald.host(), corrald.port(), tokens.publisher);
  std::string path = "/v1/tenants/" + tenant + "/scripts/" + script;
  json version = call(as_publisher, http::verb::post, path + "/versions",
                      {{"source", source}, {"manifest", manifest(capabilities)}}, 201);
  int64_t number = version["version"];
  HttpClient reviewer(corrald.host(), corrald.port(), tokens.reviewer);
  call(reviewer, http::verb::post, path + "/versions/" + std::to_string(number) + "/approve",
       nullptr, 200);
  call(reviewer, http::verb::put, path + "/aliases/live", {{"version", number}}, 200);
}

int64_t database_bytes(const CorraldProcess& corrald) {
  int64_t total = 0;
  for (const char* name : {"corral.db", "corral.db-wal"}) {
    std::error_code error;
    auto size = fs::file_size(corrald.data_dir() / name, error);
    if (!error) total += static_cast<int64_t>(size);
  }
  return total;
}

void quiet_phase(const CorraldProcess& corrald, const std::string& token, const Options& options,
                 Tally& tally) {
  LoadConnection connection(corrald.host(), corrald.port(), token);
  auto interval = std::chrono::duration<double>(1.0 / options.quiet_rate);
  auto start = Clock::now();
  auto end = start + std::chrono::duration<double>(options.seconds);
  for (int i = 0; Clock::now() < end; ++i) {
    std::this_thread::sleep_until(start +
                                  std::chrono::duration_cast<Clock::duration>(interval * i));
    json body = {{"input", {{"id", "o-" + std::to_string(i % 100)}, {"amount", 40}}}};
    tally.add(connection.post("/v1/tenants/quiet/scripts/work/invoke", body.dump()));
  }
}

// One flood connection's loop: `send` makes and sends one request and returns its status (0 when
// the connection failed).
using Sender = std::function<int(int64_t sequence)>;

struct Flood {
  std::string name;
  std::function<Sender(int connection)> make_sender;
};

std::string ms(double seconds) { return corral::bench::milliseconds(seconds, 1); }

std::string megabytes(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%+.2f MB", static_cast<double>(bytes) / 1e6);
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  corral::bench::program_name = "corral-audit-flood-bench";
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--seconds") {
      options.seconds = std::stod(value());
    } else if (arg == "--quiet-rate") {
      options.quiet_rate = std::stod(value());
    } else if (arg == "--flood-connections") {
      options.flood_connections = std::stoi(value());
    } else if (arg == "--noisy-concurrency") {
      options.noisy_concurrency = std::stoi(value());
    } else if (arg == "--floods") {
      std::string list = value();
      for (size_t start = 0; start <= list.size();) {
        size_t comma = std::min(list.find(',', start), list.size());
        options.only.push_back(list.substr(start, comma - start));
        start = comma + 1;
      }
    } else {
      fail("unknown argument " + arg +
           "; usage: corral-audit-flood-bench [--seconds S] [--quiet-rate R] "
           "[--flood-connections N] [--noisy-concurrency N] [--floods "
           "denied-capability,events,...]");
    }
  }

  CorraldProcess corrald({"--invocation-threads", "4"});
  {
    HttpClient admin = corrald.client();
    std::string policy = kPolicy;
    if (options.noisy_concurrency > 0)
      policy += "    quotas: {concurrency: " + std::to_string(options.noisy_concurrency) + "}\n";
    call(admin, http::verb::put, "/v1/policy", {{"document", policy}}, 201);
  }
  Tenant quiet = make_tenant(corrald, "quiet");
  Tenant noisy = make_tenant(corrald, "noisy");
  publish(corrald, "quiet", quiet, "work", kQuietSource, json::array({"kv"}));
  publish(corrald, "noisy", noisy, "denied", kDeniedSource, json::array({"emit"}));
  publish(corrald, "noisy", noisy, "events", kEventsSource, json::array({"emit"}));
  std::fprintf(stderr, "corrald ready on port %d; measuring quiet alone for %.0f s\n",
               corrald.port(), options.seconds);

  auto invoke = [&](const std::string& script) -> std::function<Sender(int)> {
    return [&, script](int) -> Sender {
      auto connection =
          std::make_shared<LoadConnection>(corrald.host(), corrald.port(), noisy.invoker);
      return [connection, script](int64_t) {
        return connection
            ->post("/v1/tenants/noisy/scripts/" + script + "/invoke", R"({"input":{}})")
            .status;
      };
    };
  };
  auto get_with = [&](std::string token, bool vary) -> std::function<Sender(int)> {
    return [&, token, vary](int connection_number) -> Sender {
      auto client = std::make_shared<std::unique_ptr<HttpClient>>();
      return [&, client, token, vary, connection_number](int64_t sequence) {
        try {
          if (!*client)
            *client = std::make_unique<HttpClient>(corrald.host(), corrald.port(), token);
          std::string target = "/v1/tenants/quiet/scripts";
          if (vary) {
            target += "/probe-" + std::to_string(connection_number) + "-" +
                      std::to_string(sequence) + "/versions";
          }
          return static_cast<int>((*client)->request(http::verb::get, target).result_int());
        } catch (const std::exception&) {
          client->reset();
          return 0;
        }
      };
    };
  };
  std::vector<Flood> floods = {
      {"denied-capability (16 x 4 MiB topic per run)", invoke("denied")},
      {"unauthenticated", get_with("", false)},
      {"bad token", get_with("corral_" + std::string(64, 'f'), false)},
      {"cross-tenant probes", get_with(noisy.publisher, true)},
      {"versions (256 KiB each)",
       [&](int connection_number) -> Sender {
         auto client =
             std::make_shared<HttpClient>(corrald.host(), corrald.port(), noisy.publisher);
         return [client, connection_number](int64_t sequence) {
           std::string source = "function handle() return 1 end\n--" +
                                std::to_string(connection_number) + "-" + std::to_string(sequence) +
                                "\n--" + std::string(256 * 1024, 'v');
           json body = {{"source", source}, {"manifest", manifest(json::array())}};
           try {
             return static_cast<int>(client
                                         ->request(http::verb::post,
                                                   "/v1/tenants/noisy/scripts/bulk/versions",
                                                   body.dump())
                                         .result_int());
           } catch (const std::exception&) {
             return 0;
           }
         };
       }},
      {"events (16 x 32 KiB per run)", invoke("events")},
  };

  Tally alone;
  int64_t alone_before = database_bytes(corrald);
  quiet_phase(corrald, quiet.invoker, options, alone);
  int64_t alone_growth = database_bytes(corrald) - alone_before;
  double alone_p99 = corral::testing::quantile(alone.ok_seconds(), 0.99);
  std::printf(
      "| flood | database growth | flood requests (status: count) | quiet p50 | quiet p99 "
      "| p99 / alone |\n| --- | --- | --- | --- | --- | --- |\n");
  std::printf(
      "| none (quiet alone) | %s | | %s ms | %s ms | 1.00 |\n", megabytes(alone_growth).c_str(),
      ms(corral::testing::quantile(alone.ok_seconds(), 0.5)).c_str(), ms(alone_p99).c_str());
  std::fflush(stdout);

  for (const Flood& flood : floods) {
    std::string first_word = flood.name.substr(0, flood.name.find(' '));
    if (!options.only.empty() &&
        std::find(options.only.begin(), options.only.end(), first_word) == options.only.end())
      continue;
    int64_t before = database_bytes(corrald);
    std::atomic<bool> stop{false};
    std::mutex statuses_mutex;
    std::map<int, int64_t> statuses;
    std::vector<std::thread> threads;
    for (int c = 0; c < options.flood_connections; ++c) {
      threads.emplace_back([&, c] {
        // The flood's own client shares the machine with corrald: at nice 19, so that what is
        // measured is corrald's handling of the flood, not this program's CPU.
        setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 19);
        Sender send = flood.make_sender(c);
        std::map<int, int64_t> mine;
        for (int64_t sequence = 0; !stop; ++sequence) ++mine[send(sequence)];
        std::lock_guard lock(statuses_mutex);
        for (const auto& [status, count] : mine) statuses[status] += count;
      });
    }
    Tally during;
    quiet_phase(corrald, quiet.invoker, options, during);
    stop = true;
    for (auto& thread : threads) thread.join();
    int64_t growth = database_bytes(corrald) - before;
    std::string answered;
    for (const auto& [status, count] : statuses)
      answered +=
          (answered.empty() ? "" : ", ") + std::to_string(status) + ": " + std::to_string(count);
    double p99 = corral::testing::quantile(during.ok_seconds(), 0.99);
    std::printf("| %s | %s | %s | %s ms | %s ms | %.2f |\n", flood.name.c_str(),
                megabytes(growth).c_str(), answered.c_str(),
                ms(corral::testing::quantile(during.ok_seconds(), 0.5)).c_str(), ms(p99).c_str(),
                alone_p99 > 0 ? p99 / alone_p99 : 0.0);
    if (during.count(200) != during.total())
      std::printf("|   (quiet's answers: %s) | | | | | |\n", during.summary().c_str());
    std::fflush(stdout);
  }
  return 0;
}

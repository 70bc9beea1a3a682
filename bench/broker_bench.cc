// corral-broker-bench: what a capability call costs, end to end. A script in a fully jailed
// worker calls ctx.kv.get (a sealed value in SQLite) or ctx.http.fetch (a loopback HTTP server
// this program starts on 127.0.0.1) many times in a row. The broker's handler is wrapped to
// note when each call arrives; the time between two calls of one run is one round trip: the
// reply frame to the worker, the script resuming and making the next call, the call frame back,
// and the broker answering it. p50 and p99 over all calls.
//
// Usage: corral-broker-bench [--runs 200] [--calls 20]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "broker/broker.h"
#include "broker/loopback_http_server.h"
#include "pool/jail_setup.h"
#include "pool/tenant_pool.h"

namespace {

using Clock = std::chrono::steady_clock;

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t rank = static_cast<size_t>(p * static_cast<double>(values.size()));
  return values[std::min(rank, values.size() - 1)];
}

struct Measured {
  std::vector<double> round_trips_ms;
  int failures = 0;
};

Measured measure(corral::TenantPool& pool, corral::broker::Broker& broker,
                 const corral::store::Tenant& tenant,
                 std::shared_ptr<const corral::policy::TenantPolicy> policy,
                 const std::string& capability, const std::string& source, int runs, int calls) {
  Measured measured;
  for (int run = 0; run < runs; ++run) {
    corral::InvocationRequest request;
    request.invocation_id = corral::new_invocation_id();
    request.tenant = tenant.id;
    request.source = source;
    request.input = {{"calls", calls}};
    request.limits = corral::LimitsPolicy{}.defaults;
    request.limits.subrequests = calls;
    request.limits.timeout_ms = 10'000;
    request.capabilities = {capability};
    auto inner = broker.handler_for({.tenant_id = tenant.id,
                                     .tenant_name = tenant.name,
                                     .script = "bench",
                                     .invocation_id = request.invocation_id,
                                     .policy = policy,
                                     .capabilities = {capability},
                                     .subrequests = calls});
    auto last = std::make_shared<std::optional<Clock::time_point>>();
    auto trips = std::make_shared<std::vector<double>>();
    request.capability_handler = [inner, last, trips](std::string_view call,
                                                      std::chrono::milliseconds remaining) {
      auto now = Clock::now();
      if (*last) trips->push_back(std::chrono::duration<double, std::milli>(now - **last).count());
      *last = now;
      return inner(call, remaining);
    };
    auto result = pool.run(request);
    if (result.outcome != corral::Outcome::ok) {
      if (measured.failures++ < 3) {
        std::fprintf(stderr, "corral-broker-bench: %s\n", corral::describe_failure(result).c_str());
      }
      continue;
    }
    if (run > 0) {  // the first run warms the worker, the page cache and the connection
      measured.round_trips_ms.insert(measured.round_trips_ms.end(), trips->begin(), trips->end());
    }
  }
  return measured;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 200, calls = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string arg = argv[i];
    if (arg == "--runs") runs = std::atoi(argv[i + 1]);
    if (arg == "--calls") calls = std::atoi(argv[i + 1]);
  }
  char pattern[] = "/tmp/corral-broker-bench-XXXXXX";
  if (mkdtemp(pattern) == nullptr) return 1;
  std::filesystem::path dir = pattern;
  int status = 0;
  {
    auto store = corral::store::open_sqlite_store(dir);
    auto sealer = corral::broker::Sealer::open_or_create(dir);
    corral::audit::AuditTrail audit(*store);
    corral::metrics::Registry metrics;
    corral::broker::Broker broker(*store, sealer, audit, metrics);
    auto tenant = store->create_tenant("bench", corral::store::now_ms());
    corral::testing::LoopbackHttpServer server;
    auto policy = std::make_shared<const corral::policy::TenantPolicy>(
        corral::policy::Policy::parse("tenants:\n  bench:\n    capabilities:\n      kv: {}\n"
                                      "      http:\n        allow: [\"" +
                                      server.origin() +
                                      "\"]\n        allow_private: [\"127.0.0.1\"]\n")
            .for_tenant("bench"));
    broker.kv().put({tenant.id, ""}, "order:1", R"({"id":1,"total":12.5})",
                    {256, 65536, 10000, 1 << 24});
    corral::JailSetup jail(corral::JailSetup::accept_any_missing());
    corral::TenantPool pool({}, [&](const std::string& name) {
      return std::make_unique<corral::WorkerProcess>(jail.spec_for(CORRAL_WORKER_PATH, name));
    });
    auto kv = measure(pool, broker, tenant, policy, "kv",
                      "function handle(input, ctx) for i = 1, input.calls do "
                      "ctx.kv.get('order:1') end return true end",
                      runs, calls);
    auto http = measure(pool, broker, tenant, policy, "http",
                        "function handle(input, ctx) for i = 1, input.calls do "
                        "ctx.http.fetch{url = '" +
                            server.url("/echo") + "'} end return true end",
                        std::max(2, runs / 4), calls);
    std::printf("jail layers: %s\n\n", jail.active().to_string().c_str());
    std::printf("| capability call, round trip from the script and back | p50 | p99 | calls |\n");
    std::printf("| --- | --- | --- | --- |\n");
    std::printf("| ctx.kv.get of a sealed 22-byte value | %.3f ms | %.3f ms | %zu |\n",
                percentile(kv.round_trips_ms, 0.5), percentile(kv.round_trips_ms, 0.99),
                kv.round_trips_ms.size());
    std::printf(
        "| ctx.http.fetch of a loopback server (new connection each) | %.3f ms | %.3f ms | %zu |\n",
        percentile(http.round_trips_ms, 0.5), percentile(http.round_trips_ms, 0.99),
        http.round_trips_ms.size());
    status = kv.failures + http.failures > 0 ? 1 : 0;
  }
  std::filesystem::remove_all(dir);
  return status;
}

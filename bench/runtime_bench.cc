// corral-runtime-bench: the cost of one warm invocation inside a worker's runtime, with no
// process, channel or HTTP around it (Google Benchmark). It is the floor under every warm
// figure of bench/jail.sh: what one Engine::run of the jail bench's JSON transformation costs,
// and its parts (docs/performance.md, "Inside the worker").
//
// Usage: build/release/bench/corral-runtime-bench [--benchmark_filter=REGEX] ...
#include <benchmark/benchmark.h>

#include "runtime/runtime.h"

namespace {

const char* const kTransform =
    "function handle(input) input.total = input.amount * 1.2 input.seen = true return input end";
const char* const kOrder = R"({"id":7,"amount":10,"currency":"EUR","customer":"c-42","items":3})";

corral::InvocationRequest request_for(const char* source) {
  corral::InvocationRequest request;
  request.invocation_id = "bench";
  request.source = source;
  request.input = nlohmann::json::parse(kOrder);
  request.limits = corral::LimitsPolicy{}.defaults;
  return request;
}

// Runs `request` again and again in one Engine, as a warm worker does.
void run_warm(benchmark::State& state, const corral::InvocationRequest& request) {
  corral::runtime::Engine engine;
  for (auto _ : state) {
    auto result = engine.run(request);
    if (result.outcome != corral::Outcome::ok) state.SkipWithError(result.message.c_str());
    benchmark::DoNotOptimize(result);
  }
}

// The jail bench's transformation: a fresh environment, the kept chunk, the input decoded into
// Lua, the output encoded, the state collected.
void JsonTransformation(benchmark::State& state) { run_warm(state, request_for(kTransform)); }
BENCHMARK(JsonTransformation);

// The least a run costs: the same steps around a script that does nothing.
void EmptyScript(benchmark::State& state) {
  auto request = request_for("function handle() return 1 end");
  request.input = nlohmann::json::object();
  run_warm(state, request);
}
BENCHMARK(EmptyScript);

// What the worker adds around Engine::run for each invocation: the request frame decoded from
// JSON and the result encoded to JSON.
void FrameJson(benchmark::State& state) {
  auto request = request_for(kTransform);
  nlohmann::json message = {{"invocation_id", request.invocation_id},
                            {"source", request.source},
                            {"input", request.input},
                            {"limits", corral::to_json(request.limits)}};
  std::string payload = message.dump();
  corral::runtime::Engine engine;
  auto result = engine.run(request);
  for (auto _ : state) {
    auto parsed = nlohmann::json::parse(payload);
    benchmark::DoNotOptimize(parsed);
    auto encoded = corral::to_json(result).dump();
    benchmark::DoNotOptimize(encoded);
  }
}
BENCHMARK(FrameJson);

}  // namespace

BENCHMARK_MAIN();

// Runs a script in-process through the runtime, the way corral-worker does: in one Engine that
// serves every run.
#pragma once

#include <string>

#include "runtime/runtime.h"

namespace corral::testing {

// One engine for every test of a test program, as one worker serves invocation after
// invocation: each test also checks that nothing earlier tests did shows through.
inline runtime::Engine& shared_engine() {
  static runtime::Engine engine;
  return engine;
}

inline InvocationResult run_script_in(runtime::Engine& engine, const std::string& source,
                                      nlohmann::json input = nlohmann::json::object(),
                                      nlohmann::json limits = nullptr) {
  InvocationRequest request;
  request.invocation_id = new_invocation_id();
  request.source = source;
  request.input = std::move(input);
  request.limits = LimitsPolicy{}.resolve(limits);
  return engine.run(request);
}

inline InvocationResult run_script(const std::string& source,
                                   nlohmann::json input = nlohmann::json::object(),
                                   nlohmann::json limits = nullptr) {
  return run_script_in(shared_engine(), source, std::move(input), std::move(limits));
}

// The output of `function handle(input, ctx) return EXPRESSION end`.
inline nlohmann::json evaluate(const std::string& expression,
                               nlohmann::json input = nlohmann::json::object()) {
  auto result =
      run_script("function handle(input, ctx) return " + expression + " end", std::move(input));
  if (result.outcome != Outcome::ok) return {{"unexpected", to_json(result)}};
  return result.output;
}

}  // namespace corral::testing

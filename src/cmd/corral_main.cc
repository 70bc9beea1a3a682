// corral: the command-line client. `corral run` executes a script locally, in a corral-worker
// process, with no server.
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <sstream>

#include "pool/jail_setup.h"
#include "pool/process_executor.h"

namespace {

// Exit statuses of `corral run`, one per outcome (documented in docs/scripting.md).
int exit_status(corral::Outcome outcome) {
  switch (outcome) {
    case corral::Outcome::ok: return 0;
    case corral::Outcome::script_error: return 1;
    case corral::Outcome::limit_exceeded: return 3;
    case corral::Outcome::invalid: return 4;
    case corral::Outcome::crashed: return 5;
    case corral::Outcome::denied: return 6;
    case corral::Outcome::rejected: return 7;
  }
  return 5;
}

std::string read_file(const std::string& path, const char* what) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot read " + std::string(what) + " '" + path + "': " + std::strerror(errno));
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

int invalid(const std::string& message) {
  std::cerr << "corral run: invalid: " << message << "\n";
  return exit_status(corral::Outcome::invalid);
}

struct RunOptions {
  std::string script;
  std::string input = "null";
  bool stats = false;
  bool full_result = false;
  std::string worker = corral::default_worker_path();
  nlohmann::json limits = nlohmann::json::object();
};

// One worker, jailed with every layer this machine provides (a missing one is mentioned, not
// fatal: the CLI is for trying scripts out, corrald is where refusing matters).
corral::InvocationResult run_jailed(const std::string& worker_path, const corral::InvocationRequest& request) {
  corral::JailSetup::Options jail_options;
  for (corral::jail::Layer layer : corral::jail::kAllLayers) {
    jail_options.allowed_missing.insert(std::string(corral::jail::to_string(layer)));
  }
  corral::JailSetup jail(jail_options);
  for (const auto& status : jail.statuses()) {
    if (!jail.active().has(status.layer)) {
      std::cerr << "corral run: warning: running without the " << corral::jail::to_string(status.layer)
                << " jail layer: " << status.detail << "\n";
    }
  }
  try {
    corral::WorkerProcess worker(jail.spec_for(worker_path, "cli"));
    return worker.invoke(request, std::chrono::milliseconds(50));
  } catch (const std::exception& error) {
    corral::InvocationResult result;
    result.invocation_id = request.invocation_id;
    result.outcome = corral::Outcome::crashed;
    result.message = error.what();
    return result;
  }
}

int run(const RunOptions& options) {
  corral::InvocationRequest request;
  request.invocation_id = corral::new_invocation_id();
  try {
    request.source = read_file(options.script, "the script");
    std::string input_text =
        options.input.starts_with('@') ? read_file(options.input.substr(1), "the input file") : options.input;
    request.input = corral::parse_untrusted_json(input_text, corral::kMaxDocumentDepth - 1);
  } catch (const nlohmann::json::parse_error& error) {
    return invalid(std::string("--input is not valid JSON: ") + error.what());
  } catch (const std::exception& error) {
    return invalid(error.what());
  }
  try {
    request.limits = corral::LimitsPolicy{}.resolve(options.limits);
  } catch (const corral::InvalidRequest& error) {
    return invalid(error.what());
  }

  corral::InvocationResult result = run_jailed(options.worker, request);

  if (!options.full_result)
    for (const auto& entry : result.logs) std::cerr << "[" << entry.level << "] " << entry.message << "\n";
  if (options.full_result) {
    std::cout << corral::to_json(result).dump() << "\n";
  } else if (result.outcome == corral::Outcome::ok) {
    std::cout << result.output.dump() << "\n";
  } else {
    std::cerr << "corral run: " << corral::to_string(result.outcome) << ": "
              << corral::describe_failure(result) << "\n";
    if (!result.traceback.empty()) std::cerr << result.traceback << "\n";
  }
  if (options.stats) std::cerr << "stats: " << corral::to_json(result)["stats"].dump() << "\n";
  return exit_status(result.outcome);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"corral: run Lua 5.4 scripts in corral's sandbox"};
  app.require_subcommand(1);

  RunOptions options;
  auto* run_command = app.add_subcommand(
      "run",
      "Run SCRIPT's handle(input, ctx) once in a sandboxed worker and print the output JSON.\n"
      "Exit status: 0 ok, 1 script_error, 2 usage, 3 limit_exceeded, 4 invalid, 5 crashed.");
  run_command->add_option("script", options.script, "Lua file defining handle(input, ctx)")->required();
  run_command->add_option("--input,-i", options.input,
                          "input JSON, or @FILE to read it from FILE (default: null)");
  run_command->add_flag("--stats", options.stats,
                        "also print fuel_used, memory_peak_bytes, wall_ms and cpu_ms (to stderr)");
  run_command->add_flag("--json", options.full_result,
                        "print the whole result object (outcome, output or error, logs, stats)");
  run_command->add_option("--worker", options.worker, "the corral-worker binary to run the script in");
  for (const char* limit : {"fuel", "memory_bytes", "timeout_ms", "output_bytes", "log_bytes"}) {
    std::string flag = "--" + std::string(limit);
    std::replace(flag.begin(), flag.end(), '_', '-');
    run_command->add_option_function<int64_t>(
        flag, [&options, limit](int64_t value) { options.limits[limit] = value; },
        std::string("the ") + limit + " limit for this run");
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    int status = app.exit(error);
    return status == 0 ? 0 : 2;
  }
  return run(options);
}

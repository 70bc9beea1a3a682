// Deciding which jail layers workers get, and making jailed workers for a tenant. Shared by
// corrald and the corral CLI so both run scripts under the same jail.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "invocation/invocation.h"
#include "jail/jail.h"
#include "pool/worker_process.h"

namespace corral {

// A layer the machine lacks and nobody allowed to go without; what() names the layer, why it
// is missing and the flag that accepts running without it.
struct MissingLayer : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The ceilings a worker gets so that the largest Lua heap and the longest run `limits` allows a
// request fit, with room for the interpreter and the runtime around it: what corrald applies,
// and what a bench applies to start the workers corrald would.
jail::Ceilings ceilings_for(const LimitsPolicy& limits);

class JailSetup {
 public:
  struct Options {
    std::set<std::string> allowed_missing;  // layer names, as in --allow-missing-layer
    jail::ProbeOptions probe;
    jail::Ceilings ceilings;
  };

  // Probes the machine; every layer it provides is used. Throws MissingLayer for the first
  // missing layer not in allowed_missing, std::invalid_argument for an unknown layer name.
  explicit JailSetup(Options options);

  // The options with every layer allowed to be missing: for the CLI, tests and benches, which
  // use what the machine offers rather than refuse.
  static Options accept_any_missing(Options options = {});

  // Why corrald would refuse to start with only these layers allowed to be missing (one
  // message per layer, naming the flag), or nothing.
  std::vector<std::string> refusals(const std::set<std::string>& allowed_missing) const;

  const jail::LayerSet& active() const { return active_; }
  const std::vector<jail::LayerStatus>& statuses() const { return statuses_; }
  // [{"name", "active", "detail"}] for /healthz and --check.
  nlohmann::json describe() const;

  // The spec of a jailed worker for one tenant, or of a spare for none when tenant is empty.
  WorkerSpec spec_for(const std::string& worker_path, const std::string& tenant) const;

 private:
  Options options_;
  jail::LayerSet active_;
  std::vector<jail::LayerStatus> statuses_;
  std::unique_ptr<jail::CgroupManager> cgroups_;
};

}  // namespace corral

#include "pool/jail_setup.h"

#include <algorithm>

namespace corral {

jail::Ceilings ceilings_for(const LimitsPolicy& limits) {
  jail::Ceilings ceilings;
  int64_t heap = limits.maxima.memory_bytes;
  ceilings.address_space_bytes =
      std::max<int64_t>(ceilings.address_space_bytes, 2 * heap + (256ll << 20));
  ceilings.cgroup_memory_bytes =
      std::max<int64_t>(ceilings.cgroup_memory_bytes, heap + (128ll << 20));
  ceilings.cpu_seconds =
      std::max<int64_t>(ceilings.cpu_seconds, 4 * (limits.maxima.timeout_ms / 1000 + 1));
  return ceilings;
}

JailSetup::JailSetup(Options options) : options_(std::move(options)) {
  for (const auto& name : options_.allowed_missing) {
    if (!jail::layer_from_string(name)) {
      throw std::invalid_argument("--allow-missing-layer: unknown layer '" + name +
                                  "'; the layers are " + jail::LayerSet::all().to_string());
    }
  }
  statuses_ = jail::probe_machine(options_.probe);
  for (auto& status : statuses_) {
    if (status.available && status.layer == jail::Layer::cgroup) {
      try {
        cgroups_ = std::make_unique<jail::CgroupManager>(options_.probe, options_.ceilings);
        status.detail = cgroups_->describe();
      } catch (const std::exception& error) {
        status.available = false;
        status.detail = error.what();
      }
    }
    if (status.available) active_.add(status.layer);
  }
  auto refused = refusals(options_.allowed_missing);
  if (!refused.empty()) throw MissingLayer(refused.front());
}

JailSetup::Options JailSetup::accept_any_missing(Options options) {
  for (jail::Layer layer : jail::kAllLayers)
    options.allowed_missing.insert(std::string(jail::to_string(layer)));
  return options;
}

std::vector<std::string> JailSetup::refusals(const std::set<std::string>& allowed_missing) const {
  std::vector<std::string> refused;
  for (const auto& status : statuses_) {
    std::string name(jail::to_string(status.layer));
    if (active_.has(status.layer) || allowed_missing.contains(name)) continue;
    refused.push_back("the jail layer '" + name +
                      "' is not available on this machine: " + status.detail +
                      ". Workers would run without it; to accept that, start corrald with "
                      "--allow-missing-layer=" +
                      name);
  }
  return refused;
}

nlohmann::json JailSetup::describe() const {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& status : statuses_) {
    layers.push_back({{"name", jail::to_string(status.layer)},
                      {"active", active_.has(status.layer)},
                      {"detail", status.detail}});
  }
  return layers;
}

WorkerSpec JailSetup::spec_for(const std::string& worker_path, const std::string& tenant) const {
  WorkerSpec spec;
  spec.worker_path = worker_path;
  spec.layers = active_;
  spec.ceilings = options_.ceilings;
  spec.cgroups = cgroups_.get();
  spec.announces_ready = true;
  // Tenant names become cgroup directory names: keep them to a safe alphabet.
  std::string name;
  for (char c : tenant.substr(0, 48))
    name += std::isalnum(static_cast<unsigned char>(c)) || c == '-' ? c : '_';
  spec.cgroup_name = tenant.empty() ? "spare" : name.empty() ? "worker" : name;
  return spec;
}

}  // namespace corral

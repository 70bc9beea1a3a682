#include "pool/jail_setup.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <optional>
#include <sstream>

namespace corral {
namespace {

constexpr uint64_t kFirstSignedOverflow = 1ull << 31;

std::vector<std::string> split(const std::string& line, char separator) {
  std::vector<std::string> fields;
  std::stringstream stream(line);
  std::string field;
  while (std::getline(stream, field, separator)) fields.push_back(field);
  return fields;
}

std::optional<uint64_t> number(std::string_view text) {
  uint64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

// The name corrald runs under, whose own subordinate ranges it may use.
std::string own_user_name() {
  if (const passwd* entry = getpwuid(geteuid())) return entry->pw_name;
  return std::to_string(geteuid());
}

}  // namespace

WorkerIdRange WorkerIdRange::parse(std::string_view text) {
  size_t colon = text.find(':');
  auto first = number(text.substr(0, colon));
  auto count = colon == std::string_view::npos ? std::nullopt : number(text.substr(colon + 1));
  if (!first || !count || *first > UINT32_MAX || *count > UINT32_MAX) {
    throw std::invalid_argument("--worker-id-range needs START:COUNT, two numbers such as " +
                                WorkerIdRange{}.to_string() + ", not '" + std::string(text) + "'");
  }
  return {static_cast<uint32_t>(*first), static_cast<uint32_t>(*count)};
}

std::string WorkerIdRange::to_string() const {
  return std::to_string(first) + ":" + std::to_string(count);
}

std::vector<std::string> worker_id_range_problems(const WorkerIdRange& range, size_t max_workers,
                                                  const std::string& etc) {
  std::vector<std::string> problems;
  std::string flag = "--worker-id-range " + range.to_string();
  uint64_t first = range.first, end = uint64_t{range.first} + range.count;  // [first, end)
  auto holds = [&](uint64_t id) { return id >= first && id < end; };
  const std::string fix =
      "; choose ids no user, group or other subordinate range on this host uses";
  if (range.count == 0) problems.push_back(flag + " holds no id: give it a COUNT of at least 1");
  if (range.first == 0)
    problems.push_back(flag + " holds 0, root's id: workers must map to unprivileged ids");
  if (end > kFirstSignedOverflow) {
    problems.push_back(flag + " reaches past " + std::to_string(kFirstSignedOverflow - 1) +
                       ": ids from 2^31 on are negative to signed code" + fix);
  }
  if (max_workers > 0 && range.count < max_workers) {
    problems.push_back(flag + " holds fewer ids than --max-workers (" +
                       std::to_string(max_workers) +
                       "): each worker may need an id of its own; widen the range or lower "
                       "--max-workers");
  }
  for (const char* file : {"passwd", "group"}) {
    std::ifstream entries(etc + "/" + file);
    std::string line;
    while (std::getline(entries, line)) {
      auto fields = split(line, ':');
      if (fields.size() < 3) continue;
      auto id = number(fields[2]);
      if (id && holds(*id)) {
        problems.push_back(flag + " holds " + (file == std::string("passwd") ? "uid " : "gid ") +
                           fields[2] + " of " + (file == std::string("passwd") ? "user" : "group") +
                           " '" + fields[0] + "' (" + etc + "/" + file +
                           "): workers would share its processes and keys" + fix);
      }
    }
  }
  std::string self = own_user_name();
  std::string self_uid = std::to_string(geteuid());
  for (const char* file : {"subuid", "subgid"}) {
    std::ifstream entries(etc + "/" + file);
    std::string line;
    while (std::getline(entries, line)) {
      auto fields = split(line, ':');
      if (fields.size() < 3 || fields[0] == self || fields[0] == self_uid) continue;
      auto start = number(fields[1]), count = number(fields[2]);
      if (!start || !count || *start >= end || *start + *count <= first) continue;
      problems.push_back(flag + " overlaps the subordinate ids of '" + fields[0] + "' (" + etc +
                         "/" + file + ": " + fields[1] + ":" + fields[2] +
                         "): that user's containers would share ids with workers" + fix);
    }
  }
  return problems;
}

struct WorkerIds::State {
  struct Holder {
    uint32_t id;
    size_t workers;
  };
  std::mutex mutex;
  WorkerIdRange range;
  uint64_t never_used = 0;     // ids first .. first + never_used - 1 have been given out
  std::deque<uint32_t> freed;  // oldest first
  std::unordered_map<std::string, Holder> tenants;
  size_t held = 0;

  void release(const std::string& tenant, uint32_t id) {
    std::lock_guard lock(mutex);
    if (!tenant.empty()) {
      auto holder = tenants.find(tenant);
      if (holder == tenants.end() || --holder->second.workers > 0) return;
      tenants.erase(holder);
    }
    freed.push_back(id);
    --held;
  }
};

WorkerIds::WorkerIds(WorkerIdRange range) : state_(std::make_shared<State>()) {
  state_->range = range;
}

WorkerIds::Lease WorkerIds::lease(const std::string& tenant) {
  std::lock_guard lock(state_->mutex);
  State& state = *state_;
  uint32_t id = 0;
  auto holder = tenant.empty() ? state.tenants.end() : state.tenants.find(tenant);
  if (holder != state.tenants.end()) {
    ++holder->second.workers;
    id = holder->second.id;
  } else {
    // An id never used has nothing left of anyone; a freed one is reused as late as possible,
    // so that whatever its last workers left behind has long been collected.
    if (state.never_used < state.range.count) {
      id = static_cast<uint32_t>(state.range.first + state.never_used++);
    } else if (!state.freed.empty()) {
      id = state.freed.front();
      state.freed.pop_front();
    } else {
      throw std::runtime_error(
          "no host id is free for a new worker: live workers hold all " +
          std::to_string(state.range.count) + " ids of --worker-id-range " +
          state.range.to_string() +
          " (one per tenant with a live worker, one per spare); retry when workers have ended, "
          "or widen the range");
    }
    if (!tenant.empty()) state.tenants[tenant] = {id, 1};
    ++state.held;
  }
  std::shared_ptr<State> keep = state_;
  return Lease(new Id{static_cast<uid_t>(id), static_cast<gid_t>(id)},
               [keep, tenant](const Id* leased) {
                 keep->release(tenant, static_cast<uint32_t>(leased->uid));
                 delete leased;
               });
}

size_t WorkerIds::held() const {
  std::lock_guard lock(state_->mutex);
  return state_->held;
}

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
  auto id_problems =
      worker_id_range_problems(options_.worker_ids, options_.max_workers.value_or(0));
  if (!id_problems.empty()) throw std::invalid_argument(id_problems.front());
  worker_ids_ = std::make_unique<WorkerIds>(options_.worker_ids);
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
  if (active_.has(jail::Layer::namespaces) && options_.share_network) {
    try {
      shared_network_ = jail::SharedNetwork::create();
    } catch (const std::exception& error) {
      why_network_not_shared_ = error.what();
    }
  }
  for (auto& status : statuses_) {
    if (status.layer != jail::Layer::namespaces || !status.available) continue;
    status.detail += shared_network_
                         ? "; the network namespace is one empty namespace shared by every "
                           "worker, owned by the host, with each worker's abstract unix sockets "
                           "and signals scoped to itself (Landlock)"
                         : "; a network namespace per worker";
  }
  auto refused = refusals(options_.allowed_missing);
  if (!refused.empty()) throw MissingLayer(refused.front());
}

JailSetup::Options JailSetup::accept_any_missing() { return accept_any_missing(Options()); }

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
  spec.network_namespace_fd = shared_network_ ? shared_network_->fd() : -1;
  spec.announces_ready = true;
  // Tenant names become cgroup directory names: keep them to a safe alphabet.
  std::string name;
  for (char c : tenant.substr(0, 48))
    name += std::isalnum(static_cast<unsigned char>(c)) || c == '-' ? c : '_';
  spec.cgroup_name = tenant.empty() ? "spare" : name.empty() ? "worker" : name;
  spec.tenant = tenant;
  if (active_.has(jail::Layer::namespaces)) {
    WorkerIds::Lease lease = worker_ids_->lease(tenant);
    spec.outside_uid = lease->uid;
    spec.outside_gid = lease->gid;
    spec.id_lease = std::move(lease);
  }
  return spec;
}

}  // namespace corral

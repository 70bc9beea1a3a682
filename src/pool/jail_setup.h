// Deciding which jail layers workers get, and making jailed workers for a tenant. Shared by
// corrald and the corral CLI so both run scripts under the same jail.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
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

// The host ids that jailed workers' root maps to (corrald --worker-id-range START:COUNT): one
// uid, and the gid of the same number, per tenant. Workers of different tenants never share a
// host uid, so none can reach another tenant's keys (a key's "user" permissions go to every
// process of its owner's uid), signal or trace its processes, or use up its per-uid quotas.
struct WorkerIdRange {
  // Above systemd's container range (524288-1879048191) and the subordinate ids useradd hands
  // out, below 2^31 (ids past it upset signed code).
  static constexpr uint32_t kDefaultFirst = 0x70000000;
  static constexpr uint32_t kDefaultCount = 65536;
  uint32_t first = kDefaultFirst;
  uint32_t count = kDefaultCount;

  // "START:COUNT"; throws std::invalid_argument saying what is wrong with it.
  static WorkerIdRange parse(std::string_view text);
  std::string to_string() const;  // the form parse() reads
};

// Why these ids cannot be given to workers: the range wraps or reaches 2^31, holds root, or
// holds a user or group of this host (/etc/passwd, /etc/group) or a subordinate range
// (/etc/subuid, /etc/subgid) of a user other than the one corrald runs as; or it has fewer ids
// than max_workers (a worker may need one of its own). Empty when they can be.
std::vector<std::string> worker_id_range_problems(const WorkerIdRange& range, size_t max_workers,
                                                  const std::string& etc = "/etc");

// Hands out the ids of a WorkerIdRange. A tenant's workers share one id while any of them
// lives; an id goes back to the range when the last worker holding it is gone, and is given
// again, to any tenant, only after every id never used and every id freed before it. A spare
// (a worker for no tenant yet) gets an id of its own, which it keeps once bound to a tenant, so
// that id, too, serves one tenant at a time.
class WorkerIds {
 public:
  struct Id {
    uid_t uid;
    gid_t gid;
  };
  // Held by a worker for its whole life (WorkerSpec::id_lease); the id is freed with the last.
  using Lease = std::shared_ptr<const Id>;

  explicit WorkerIds(WorkerIdRange range);
  // The tenant's id ("" for a spare). Throws std::runtime_error naming the range and the flag
  // when every id is held by live workers of other tenants.
  Lease lease(const std::string& tenant);
  size_t held() const;  // ids held by live workers

 private:
  struct State;
  std::shared_ptr<State> state_;  // shared with the leases, which may outlive this
};

class JailSetup {
 public:
  struct Options {
    std::set<std::string> allowed_missing;  // layer names, as in --allow-missing-layer
    jail::ProbeOptions probe;
    jail::Ceilings ceilings;
    WorkerIdRange worker_ids;
    std::optional<size_t> max_workers;  // when set, the range must hold at least this many ids
    // Workers join one empty network namespace made at start (jail::SharedNetwork) rather than
    // each creating one, where the machine allows it (corrald --worker-network).
    bool share_network = true;
  };

  // Probes the machine; every layer it provides is used. Throws MissingLayer for the first
  // missing layer not in allowed_missing, std::invalid_argument for an unknown layer name or
  // a worker id range that cannot be used (worker_id_range_problems).
  explicit JailSetup(Options options);

  // The options with every layer allowed to be missing: for the CLI, tests and benches, which
  // use what the machine offers rather than refuse.
  static Options accept_any_missing(Options options);
  static Options accept_any_missing();

  // Why corrald would refuse to start with only these layers allowed to be missing (one
  // message per layer, naming the flag), or nothing.
  std::vector<std::string> refusals(const std::set<std::string>& allowed_missing) const;

  const jail::LayerSet& active() const { return active_; }
  const std::vector<jail::LayerStatus>& statuses() const { return statuses_; }
  // [{"name", "active", "detail"}] for /healthz and --check.
  nlohmann::json describe() const;

  // The spec of a jailed worker for one tenant, or of a spare for none when tenant is empty,
  // with the tenant's host ids leased (WorkerIds::lease, which may throw).
  WorkerSpec spec_for(const std::string& worker_path, const std::string& tenant) const;

  const WorkerIds& worker_ids() const { return *worker_ids_; }
  // The workers' cgroups, or nullptr without the cgroup layer.
  const jail::CgroupManager* cgroups() const { return cgroups_.get(); }
  // Whether workers join the shared network namespace, and if not, why (empty when they do or
  // were not asked to).
  bool network_shared() const { return shared_network_ != nullptr; }
  const std::string& why_network_not_shared() const { return why_network_not_shared_; }

 private:
  Options options_;
  std::unique_ptr<WorkerIds> worker_ids_;
  jail::LayerSet active_;
  std::vector<jail::LayerStatus> statuses_;
  std::unique_ptr<jail::CgroupManager> cgroups_;
  std::unique_ptr<jail::SharedNetwork> shared_network_;
  std::string why_network_not_shared_;
};

}  // namespace corral

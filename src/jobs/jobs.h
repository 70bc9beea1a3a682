// Jobs: asynchronous runs of a stored version that survive a crash of corrald, and the signed
// webhooks that announce them (docs/operations.md, "Jobs and webhooks"; docs/api.md, "Jobs").
//
// The store holds all of it (store.h, "jobs"); this library holds the runners and senders that
// move it along, and the rules both the API and they apply:
//   - A job is queued → running → succeeded | failed | cancelled. Runners take the oldest queued
//     job whose time has come, marking it running with attempts + 1 and leased to this node
//     (Options::node) in one transaction, run it through RunVersion (corrald: api::run_job, the
//     invoker's prepare → run → finish that POST …/invoke goes through, with no HTTP request),
//     and write the final state and result in one more, fenced by the lease token of their claim
//     so that a result is written once, by the current holder.
//   - Leases (store.h, "Leases"): a heartbeat thread renews the lease of every job this service
//     runs every lease/3. A renewal refused means another node took the job after this node's
//     lease lapsed: the runner stops caring about it and its result is not written (the log says
//     so). A job whose lease lapsed (its node died or paused) is handed back by the next claim,
//     on any node sharing the store, its attempt counted as crashed.
//   - Outcome → state: ok → succeeded; script_error, limit_exceeded, denied, invalid, not-found,
//     version-disabled → failed at once; crashed → queued again (after 200 ms × attempt) until
//     max_attempts runs have crashed, then failed; rejected (a 503 circuit-open) → queued again
//     after its Retry-After, the attempt given back, since the version never ran.
//   - start() first recovers what a dead corrald left: running jobs go back to queued (the
//     interrupted attempt counts as crashed; one on its last attempt fails), deliveries in flight
//     become due again.
//   - A final job with a callback_url has one delivery. Senders POST the job's JSON with
//     Corral-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>, through the
//     broker's HTTP engine under the tenant's http grant in force at the time of sending; 2xx is
//     delivered, network errors, 429 and 5xx are tried again after backoff_ms × 2^(try - 1) up to
//     webhook_attempts tries, anything else (or the last failure) makes the delivery dead, its
//     reason kept. A delivery is sent at least once: a corrald killed while sending sends again.
//   - The input is customers' data: the store drops it when the job ends (any way it ends) unless
//     the job was submitted under the policy's jobs.inputs: true, so that the job's JSON and its
//     webhook then carry "input": null. A job submitted with "webhook_input": false has its
//     webhook carry "input": null even while the job keeps the input.
//
// A JobService is thread-safe; its threads run until stop() (or destruction).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "broker/http_fetch.h"
#include "broker/sealing.h"
#include "metrics/metrics.h"
#include "policy/policy.h"
#include "store/store.h"

namespace corral::policy {
class PolicyService;
}

namespace corral::jobs {

// What a run of a stored version answered: the HTTP status and JSON body POST …/invoke would
// have (api/run_answers.h writes them from the invoker's result), and the outcome ("ok",
// "script_error", "limit_exceeded", "crashed", "denied", "invalid") or "rejected" (503
// circuit-open), "not-found", "version-disabled" when nothing ran.
struct RunAnswer {
  int status = 0;
  std::string outcome;
  nlohmann::json body;
};
using RunVersion = std::function<RunAnswer(
    const std::string& tenant_name, const std::string& script, int64_t version,
    const nlohmann::json& input, const std::string& invocation_id)>;

// A node's name in the leases of the jobs it runs (corrald --node-name): 1 to 100 of letters,
// digits, '.', '_' and '-'.
bool valid_node_name(std::string_view name);
// A name no other corrald has: "<hostname>-<pid>-<8 random hex digits>" (the hostname cut to
// what valid_node_name allows).
std::string make_node_name();

// Idempotency-Key: 1 to 200 bytes of printable ASCII without spaces.
inline constexpr size_t kMaxIdempotencyKeyBytes = 200;
bool valid_idempotency_key(std::string_view key);

// The SHA-256 (hex) of a submission's canonical form: what it runs (script, alias or version),
// its input, its callback and whether the webhook may carry the input; member order and
// whitespace in the body do not matter. (webhook_input is in the form only when false, so that
// the hashes of submissions made before it existed stay what they were.)
std::string request_hash(std::string_view script, std::string_view target,
                         const nlohmann::json& input, std::string_view callback_url,
                         bool webhook_input = true);

// Why a callback URL is refused at submission; rule is the policy path that decides.
struct CallbackRefusal {
  std::string rule;
  std::string detail;
  std::string hint;
};
// Whether the tenant's policy lets corrald POST to `url`: the http grant must exist and one of its
// allow patterns admit the URL; an IP literal must be public or in allow_private. Names are not
// looked up here: every address is checked again when the delivery connects.
std::optional<CallbackRefusal> check_callback(const policy::TenantPolicy& tenant,
                                              std::string_view url);

// "t=<unix_seconds>,v1=<hex HMAC-SHA256 keyed by secret over "<t>.<body>">".
std::string signature_header(std::string_view secret, int64_t unix_seconds, std::string_view body);

// The JSON of a job as GET …/jobs/{id} answers it and a webhook carries it.
nlohmann::json job_json(const store::Job& job, const std::string& tenant_name);
nlohmann::json delivery_json(const store::Delivery& delivery);

struct Options {
  unsigned threads = 2;           // runners (corrald --job-threads)
  unsigned delivery_threads = 1;  // webhook senders
  // How often idle threads look for work whose time has come (a submission wakes a runner at once).
  std::chrono::milliseconds poll{100};
  // Crashed attempts wait retry_delay × attempt before the next.
  std::chrono::milliseconds retry_delay{200};
  // Final jobs (and their settled webhook deliveries) are forgotten this long after they ended
  // (corrald --job-retention-seconds); 0 keeps them for ever. A webhook sender prunes on its
  // first turn after start() and then every prune_every.
  std::chrono::milliseconds retention{std::chrono::hours(24 * 7)};
  std::chrono::milliseconds prune_every{std::chrono::minutes(1)};
  // This service's name in the leases of the jobs it runs; empty: make_node_name().
  std::string node = {};
  // How long a claimed job is leased for; renewed every lease/3 while it runs (corrald
  // --job-lease-seconds). Another node may take the job once the lease lapsed.
  std::chrono::milliseconds lease{std::chrono::seconds(30)};
  // Unix milliseconds that claims and renewals are stamped with (tests move it).
  std::function<int64_t()> clock = store::now_ms;
};

class JobService {
 public:
  // `policy` may be null (tests): the built-in safe default then applies to deliveries.
  JobService(store::Store& store, const broker::Sealer& sealer, const policy::PolicyService* policy,
             metrics::Registry& metrics, RunVersion run, Options options = {});
  ~JobService();
  JobService(const JobService&) = delete;
  JobService& operator=(const JobService&) = delete;

  // Recovers what a dead corrald left (see above), then starts the threads. What was recovered is
  // logged.
  void start();
  // Waits for the runs and sends in progress, then stops the threads.
  void stop();
  // A job was submitted: wakes a runner rather than waiting for the next poll.
  void notify();

  // A new signing secret for the tenant's webhooks, sealed in the store; the old one stops
  // signing at once. Returned once: corrald never shows it again.
  std::string rotate_webhook_secret(const std::string& tenant_id);
  bool has_webhook_secret(const std::string& tenant_id);

  // The work one thread does in one go, public for tests that drive it without threads: true if
  // there was something to do.
  bool run_one();
  bool deliver_one();
  // One heartbeat: renews the lease of every job this service's runners are running, to
  // clock() + lease. Returns how many were lost (taken by another node): those are logged, and
  // their results will not be written.
  int renew_leases();
  const std::string& node() const { return options_.node; }
  // Sets the jobs and dead-deliveries gauges from the store.
  void refresh_gauges();
  // Forgets the jobs that ended more than `retention` before `now_ms` (see Options), in batches;
  // returns how many. Nothing with retention 0.
  int64_t prune(int64_t now_ms);

 private:
  void runner_loop();
  void sender_loop();
  void heartbeat_loop();
  void run_claimed(const store::Job& job);
  // The run of job `id` returned: it is no longer renewed. true if its lease was lost meanwhile.
  bool release(const std::string& id);
  std::optional<std::string> webhook_secret(const std::string& tenant_id);
  policy::TenantPolicy tenant_policy(const std::string& tenant_name) const;

  store::Store& store_;
  const broker::Sealer& sealer_;
  const policy::PolicyService* policy_;
  metrics::Registry& metrics_;
  RunVersion run_;
  Options options_;
  broker::HttpFetcher http_;

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool started_ = false;
  uint64_t submitted_ = 0;  // bumped by notify(), so a runner does not sleep past a submission
  std::vector<std::thread> threads_;

  // The jobs this service's runners run, by id: the lease token of their claim, and whether a
  // renewal was refused. Under held_mutex_.
  struct Held {
    int64_t lease_token = 0;
    bool lost = false;
  };
  std::mutex held_mutex_;
  std::map<std::string, Held> held_;
  // The heartbeat outlives the runners in stop(), so that a run finishing then keeps its lease.
  std::thread heartbeat_;
  std::condition_variable heartbeat_wake_;
  bool heartbeat_stopping_ = false;  // under mutex_
};

}  // namespace corral::jobs

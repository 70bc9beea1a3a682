#include "jobs/jobs.h"

#include <sodium.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <map>

#include "broker/address_rules.h"
#include "policy/policy_service.h"

namespace corral::jobs {

namespace {

using nlohmann::json;

std::string hex(const unsigned char* bytes, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text;
  text.reserve(size * 2);
  for (size_t i = 0; i < size; ++i) {
    text.push_back(kDigits[bytes[i] >> 4]);
    text.push_back(kDigits[bytes[i] & 0xf]);
  }
  return text;
}

void ensure_sodium() {
  if (sodium_init() < 0)
    throw std::runtime_error("libsodium could not initialise (no usable random source?)");
}

using store::iso8601;

json time_or_null(std::optional<int64_t> ms) { return ms ? json(iso8601(*ms)) : json(); }

void log(spdlog::level::level_enum level, const std::string& message, json fields) {
  fields["level"] = spdlog::level::to_string_view(level).data();
  fields["msg"] = message;
  spdlog::log(level, fields.dump(-1, ' ', false, json::error_handler_t::replace));
}

// The host of an absolute http(s) URL, without brackets; empty when there is none.
std::string url_host(std::string_view url) {
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return {};
  std::string_view rest = url.substr(scheme_end + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (auto at = rest.rfind('@'); at != std::string_view::npos) rest = rest.substr(at + 1);
  if (rest.starts_with('[')) {
    auto close = rest.find(']');
    return close == std::string_view::npos ? "" : std::string(rest.substr(1, close - 1));
  }
  return std::string(rest.substr(0, rest.find(':')));
}

broker::SealedPlace secret_place(const std::string& tenant_id) {
  return {.purpose = "webhook", .tenant_id = tenant_id, .ns = "", .name = "signing-secret"};
}

broker::HttpRules rules_of(const policy::HttpGrant& grant) {
  broker::HttpRules rules;
  for (const auto& pattern : grant.allow) rules.allow.push_back(pattern.text);
  for (const auto& range : grant.allow_private) rules.allow_private.push_back(range.text);
  rules.max_response_bytes = grant.max_response_bytes;
  rules.max_redirects = grant.max_redirects;
  rules.timeout_ms = grant.timeout_ms;
  // The job's JSON holds the whole result, which the grant's request limit (meant for scripts'
  // bodies) does not anticipate: a result is bounded by output_bytes already.
  rules.max_request_bytes = std::max<int64_t>(grant.max_request_bytes, 80ll << 20);
  return rules;
}

}  // namespace

bool valid_node_name(std::string_view name) {
  if (name.empty() || name.size() > 100) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

std::string make_node_name() {
  ensure_sodium();
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  std::string name;
  for (const char* c = host; *c != '\0' && name.size() < 64; ++c) {
    if (valid_node_name(std::string_view(c, 1))) name.push_back(*c);
  }
  if (name.empty()) name = "corrald";
  unsigned char random[4];
  randombytes_buf(random, sizeof random);
  return name + "-" + std::to_string(getpid()) + "-" + hex(random, sizeof random);
}

bool valid_idempotency_key(std::string_view key) {
  if (key.empty() || key.size() > kMaxIdempotencyKeyBytes) return false;
  return std::all_of(key.begin(), key.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

std::string request_hash(std::string_view script, std::string_view target, const json& input,
                         std::string_view callback_url, bool webhook_input) {
  ensure_sodium();
  // nlohmann::json keeps object members sorted, so dump() is one canonical text per value.
  json canonical = {
      {"script", script}, {"target", target}, {"input", input}, {"callback_url", callback_url}};
  if (!webhook_input) canonical["webhook_input"] = false;
  std::string text = canonical.dump(-1, ' ', false, json::error_handler_t::strict);
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(text.data()), text.size());
  return hex(digest, sizeof digest);
}

std::optional<CallbackRefusal> check_callback(const policy::TenantPolicy& tenant,
                                              std::string_view url) {
  std::string shown(url.substr(0, 200));
  if (!tenant.http) {
    auto revoked = tenant.revoked.find("http");
    std::string rule = revoked != tenant.revoked.end()
                           ? revoked->second
                           : "capabilities.http (granted neither in tenants." + tenant.tenant +
                                 " nor in defaults)";
    return CallbackRefusal{
        rule,
        "tenant \"" + tenant.tenant +
            "\" has no http grant, so corrald may not POST webhooks "
            "for it (callback_url " +
            shown + ")",
        "leave out callback_url and poll GET …/jobs/{id}, or ask the operator to grant http "
        "with an allow pattern for the callback's origin"};
  }
  const policy::HttpGrant& grant = *tenant.http;
  broker::HttpRules rules = rules_of(grant);
  if (!broker::matching_allow_pattern(rules, url)) {
    return CallbackRefusal{
        grant.source + ".allow",
        "callback_url " + shown +
            " is not an absolute http(s) URL that one of the allow "
            "patterns of the tenant's http grant admits",
        "use a callback on an allowed origin, or ask the operator to add its origin to " +
            grant.source + ".allow"};
  }
  if (auto address = broker::IpAddress::parse(url_host(url))) {
    std::vector<broker::IpRange> ranges;
    for (const auto& text : rules.allow_private) {
      std::string error;
      if (auto range = broker::IpRange::parse(text, &error)) ranges.push_back(*range);
    }
    if (!broker::address_allowed(*address, ranges)) {
      auto special = broker::classify(*address);
      return CallbackRefusal{
          grant.source + ".allow_private",
          "callback_url " + shown + " names " + address->to_string() + ", a " +
              (special ? std::string(special->kind) : std::string("special-purpose")) +
              " address the tenant's http grant does not allow",
          "use a public address, or ask the operator to add it to " + grant.source +
              ".allow_private"};
    }
  }
  return std::nullopt;
}

std::string signature_header(std::string_view secret, int64_t unix_seconds, std::string_view body) {
  ensure_sodium();
  std::string t = std::to_string(unix_seconds);
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(secret.data()),
                              secret.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(t.data()), t.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>("."), 1);
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(body.data()),
                                body.size());
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_final(&state, mac);
  return "t=" + t + ",v1=" + hex(mac, sizeof mac);
}

json job_json(const store::Job& job, const std::string& tenant_name) {
  json input = json::parse(job.input, nullptr, false);
  json body = {{"id", job.id},
               {"tenant", tenant_name},
               {"script", job.script},
               {"version", job.version},
               {"alias", job.alias.empty() ? json() : json(job.alias)},
               {"state", store::to_string(job.state)},
               {"attempts", job.attempts},
               {"max_attempts", job.max_attempts},
               {"cancel_requested", job.cancel_requested},
               {"callback_url", job.callback_url.empty() ? json() : json(job.callback_url)},
               {"created_at", iso8601(job.created_at)},
               {"updated_at", iso8601(job.updated_at)},
               {"started_at", time_or_null(job.started_at)},
               {"finished_at", time_or_null(job.finished_at)},
               {"outcome", job.outcome.empty() ? json() : json(job.outcome)},
               {"status", job.status > 0 ? json(job.status) : json()},
               {"error", job.error.empty() ? json() : json(job.error)},
               // The node running it; only while it runs (the name is corrald's --node-name).
               {"node", job.state == store::JobState::running && !job.lease_holder.empty()
                            ? json(job.lease_holder)
                            : json()}};
  json result = job.result.empty() ? json() : json::parse(job.result, nullptr, false);
  body["result"] = result.is_discarded() ? json(job.result) : result;
  if (job.input_dropped())
    body["input"] = nullptr;
  else
    body["input"] = input.is_discarded() ? json(job.input) : input;
  // Whether the input outlives the run: false, it is dropped (null) once the job ends.
  body["input_kept"] = job.keep_input;
  return body;
}

json delivery_json(const store::Delivery& delivery) {
  return {{"id", delivery.id},
          {"job_id", delivery.job_id},
          {"url", delivery.url},
          {"state", store::to_string(delivery.state)},
          {"attempts", delivery.attempts},
          {"max_attempts", delivery.max_attempts},
          {"next_attempt_at", delivery.state == store::DeliveryState::pending
                                  ? json(iso8601(delivery.next_attempt_at))
                                  : json()},
          {"last_status", delivery.last_status ? json(*delivery.last_status) : json()},
          {"last_error", delivery.last_error.empty() ? json() : json(delivery.last_error)},
          {"created_at", iso8601(delivery.created_at)},
          {"updated_at", iso8601(delivery.updated_at)},
          {"delivered_at", time_or_null(delivery.delivered_at)}};
}

JobService::JobService(store::Store& store, const broker::Sealer& sealer,
                       const policy::PolicyService* policy, metrics::Registry& metrics,
                       RunVersion run, Options options)
    : store_(store),
      sealer_(sealer),
      policy_(policy),
      metrics_(metrics),
      run_(std::move(run)),
      options_(std::move(options)) {
  if (options_.node.empty()) options_.node = make_node_name();
}

JobService::~JobService() { stop(); }

void JobService::start() {
  {
    std::lock_guard lock(mutex_);
    if (started_) return;
    started_ = true;
    stopping_ = false;
    heartbeat_stopping_ = false;
  }
  int64_t now = store::now_ms();
  auto [requeued, failed] = store_.recover_jobs(now);
  int64_t deliveries = store_.recover_deliveries(now);
  if (requeued + failed + deliveries > 0) {
    log(spdlog::level::warn, "recovered jobs left running by a corrald that stopped",
        {{"requeued", requeued},
         {"failed_on_last_attempt", failed},
         {"deliveries_resent", deliveries},
         {"hint",
          "nothing to do: each requeued job runs again, counting the interrupted attempt"}});
  }
  refresh_gauges();
  for (unsigned i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { runner_loop(); });
  for (unsigned i = 0; i < options_.delivery_threads; ++i)
    threads_.emplace_back([this] { sender_loop(); });
  if (options_.threads > 0) heartbeat_ = std::thread([this] { heartbeat_loop(); });
}

void JobService::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  {
    std::lock_guard lock(mutex_);
    heartbeat_stopping_ = true;
  }
  heartbeat_wake_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
  std::lock_guard lock(mutex_);
  started_ = false;
}

void JobService::notify() {
  {
    std::lock_guard lock(mutex_);
    ++submitted_;
  }
  wake_.notify_one();
}

void JobService::runner_loop() {
  for (;;) {
    uint64_t seen;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      seen = submitted_;
    }
    bool worked = false;
    try {
      worked = run_one();
    } catch (const std::exception& error) {
      // A store error (disk full, locked): nothing was claimed or the claim stays in the store,
      // to be recovered at the next start; wait a poll and try again.
      log(spdlog::level::err, "a job runner could not reach the store",
          {{"error", error.what()}, {"hint", "check the disk and the data directory"}});
    }
    if (worked) continue;
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, options_.poll, [&] { return stopping_ || submitted_ != seen; });
  }
}

// The senders also refresh the gauges (about once a second, one query for all states): there is
// always a sender, while there may be no runner (--job-threads 0).
void JobService::sender_loop() {
  auto last_gauges = std::chrono::steady_clock::time_point();
  // Not in start(): a long backlog of old jobs would hold corrald back from listening.
  auto last_prune = std::chrono::steady_clock::time_point();  // so the first turn prunes
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    bool worked = false;
    try {
      worked = deliver_one();
      if (std::chrono::steady_clock::now() - last_gauges > std::chrono::seconds(1)) {
        last_gauges = std::chrono::steady_clock::now();
        refresh_gauges();
      }
      if (std::chrono::steady_clock::now() - last_prune > options_.prune_every) {
        last_prune = std::chrono::steady_clock::now();
        prune(store::now_ms());
        // On a store other nodes share, a node that died mid-send leaves its delivery in flight,
        // and only a live node can hand it back (store.h, recover_deliveries).
        if (store_.shared()) {
          if (int64_t abandoned = store_.recover_deliveries(store::now_ms()); abandoned > 0) {
            log(spdlog::level::warn, "handed back webhook deliveries another node abandoned",
                {{"deliveries", abandoned},
                 {"hint", "a corrald node stopped while sending them; they are sent again"}});
          }
        }
      }
    } catch (const std::exception& error) {
      log(spdlog::level::err, "a webhook sender could not reach the store",
          {{"error", error.what()}, {"hint", "check the disk and the data directory"}});
    }
    if (worked) continue;
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, options_.poll, [&] { return stopping_; });
  }
}

int64_t JobService::prune(int64_t now_ms) {
  if (options_.retention.count() <= 0) return 0;
  constexpr int64_t kBatch = 1000;  // jobs per transaction, so the store is never held long
  int64_t cutoff = now_ms - options_.retention.count();
  int64_t pruned = 0;
  for (;;) {
    int64_t batch = store_.prune_jobs(cutoff, kBatch);
    pruned += batch;
    if (batch < kBatch) break;
    std::lock_guard lock(mutex_);
    if (stopping_) break;
  }
  if (pruned > 0) {
    metrics_.record_jobs_pruned(pruned);
    log(spdlog::level::info, "forgot jobs that ended before the retention",
        {{"jobs", pruned},
         {"retention_seconds", options_.retention.count() / 1000},
         {"hint",
          "their results and Idempotency-Keys are gone; --job-retention-seconds sets how "
          "long final jobs are kept"}});
  }
  return pruned;
}

void JobService::refresh_gauges() {
  std::map<store::JobState, int64_t> counts;
  for (auto state : {store::JobState::queued, store::JobState::running, store::JobState::succeeded,
                     store::JobState::failed, store::JobState::cancelled}) {
    counts[state] = 0;
  }
  for (const auto& [state, count] : store_.count_jobs()) counts[state] = count;
  for (const auto& [state, count] : counts) metrics_.set_jobs(store::to_string(state), count);
  metrics_.set_dead_deliveries(store_.count_deliveries(store::DeliveryState::dead));
}

bool JobService::run_one() {
  auto job = store_.claim_job(options_.clock(), options_.node, options_.lease.count());
  if (!job) return false;
  {
    std::lock_guard lock(held_mutex_);
    held_[job->id] = Held{job->lease_token};
  }
  try {
    run_claimed(*job);
  } catch (...) {
    release(job->id);
    throw;
  }
  release(job->id);
  return true;
}

bool JobService::release(const std::string& id) {
  std::lock_guard lock(held_mutex_);
  auto held = held_.find(id);
  if (held == held_.end()) return false;
  bool lost = held->second.lost;
  held_.erase(held);
  return lost;
}

int JobService::renew_leases() {
  std::vector<std::pair<std::string, int64_t>> running;
  {
    std::lock_guard lock(held_mutex_);
    for (const auto& [id, held] : held_)
      if (!held.lost) running.emplace_back(id, held.lease_token);
  }
  int lost = 0;
  for (const auto& [id, lease_token] : running) {
    if (store_.renew_job_lease(id, lease_token, options_.clock() + options_.lease.count()))
      continue;
    {
      std::lock_guard lock(held_mutex_);
      auto held = held_.find(id);
      // Released meanwhile: its run returned and the runner writes (or wrote) its end itself.
      if (held == held_.end() || held->second.lease_token != lease_token) continue;
      held->second.lost = true;
    }
    ++lost;
    log(spdlog::level::warn, "lost the lease of a running job: its result will not be written",
        {{"job", id},
         {"node", options_.node},
         {"lease_token", lease_token},
         {"hint",
          "another node took the job after this node's lease lapsed (this node was paused, or "
          "could not reach the store, for longer than --job-lease-seconds); its result is the "
          "one kept"}});
  }
  return lost;
}

void JobService::heartbeat_loop() {
  const auto beat = std::max(options_.lease / 3, std::chrono::milliseconds(1));
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      heartbeat_wake_.wait_for(lock, beat, [&] { return heartbeat_stopping_; });
      if (heartbeat_stopping_) return;
    }
    try {
      renew_leases();
    } catch (const std::exception& error) {
      // The next beat tries again; the leases hold until they expire.
      log(spdlog::level::err, "could not renew the leases of the jobs this node runs",
          {{"error", error.what()},
           {"hint", "check the store; a lease that lapses lets another node take its job"}});
    }
  }
}

void JobService::run_claimed(const store::Job& job) {
  RunAnswer answer;
  std::string failure;
  auto tenant = store_.find_tenant(job.tenant_id);
  json input = json::parse(job.input, nullptr, false);
  if (!tenant) {
    answer = {404, "not-found", json()};
    failure = "the job's tenant no longer exists";
  } else if (input.is_discarded()) {
    answer = {400, "invalid", json()};
    failure = "the stored input is not JSON (the database was edited?)";
  } else {
    try {
      answer = run_(tenant->name, job.script, job.version, input,
                    job.id + "-" + std::to_string(job.attempts));
    } catch (const std::exception& error) {
      // Not the script's doing: treated as a crash, so it is tried again.
      answer = {500, "crashed", json()};
      failure = std::string("the run could not be started: ") + error.what();
    }
  }
  int64_t now = options_.clock();
  if (release(job.id)) {
    log(spdlog::level::warn, "a job's result was not written: this node lost its lease",
        {{"job", job.id}, {"attempt", job.attempts}, {"node", options_.node}});
    return;
  }
  const std::string& outcome = answer.outcome;
  std::string result = answer.body.is_null()
                           ? std::string()
                           : answer.body.dump(-1, ' ', false, json::error_handler_t::replace);
  if (failure.empty() && answer.body.is_object() && answer.body.contains("detail") &&
      answer.body["detail"].is_string()) {
    failure = answer.body["detail"];
  }

  auto finish = [&](store::JobState state, const char* metric) {
    auto done = store_.finish_job({.id = job.id,
                                   .lease_token = job.lease_token,
                                   .state = state,
                                   .outcome = outcome,
                                   .status = answer.status,
                                   .result = result,
                                   .error = state == store::JobState::failed ? failure : "",
                                   .at = now});
    if (!done) {
      log(spdlog::level::warn, "a job's result was not written: it was no longer this run's",
          {{"job", job.id},
           {"attempt", job.attempts},
           {"node", options_.node},
           {"lease_token", job.lease_token}});
      return;
    }
    metrics_.record_job_run(done->state == store::JobState::cancelled ? "cancelled" : metric);
  };
  auto requeue = [&](std::chrono::milliseconds delay, bool count_attempt, const std::string& why,
                     const char* metric) {
    auto done =
        store_.requeue_job(job.id, job.lease_token, now + delay.count(), count_attempt, why, now);
    if (!done) {
      log(spdlog::level::warn, "a job was not queued again: it was no longer this run's",
          {{"job", job.id},
           {"attempt", job.attempts},
           {"node", options_.node},
           {"lease_token", job.lease_token}});
      return;
    }
    metrics_.record_job_run(done->state == store::JobState::cancelled ? "cancelled" : metric);
    if (done->state == store::JobState::queued) notify();
  };

  if (outcome == "ok") {
    finish(store::JobState::succeeded, "succeeded");
  } else if (outcome == "crashed") {
    if (job.attempts < job.max_attempts) {
      requeue(options_.retry_delay * job.attempts, true,
              "attempt " + std::to_string(job.attempts) + " of " +
                  std::to_string(job.max_attempts) + " crashed" +
                  (failure.empty() ? "" : ": " + failure) + "; it will be tried again",
              "retried");
    } else {
      if (failure.empty()) failure = "the worker crashed";
      failure =
          "all " + std::to_string(job.max_attempts) + " attempts crashed; the last: " + failure;
      finish(store::JobState::failed, "failed");
    }
  } else if (outcome == "rejected" || outcome == "circuit-open") {
    int64_t seconds = 1;
    if (answer.body.is_object() && answer.body.contains("retry_after") &&
        answer.body["retry_after"].is_number_integer()) {
      seconds = std::clamp<int64_t>(answer.body["retry_after"].get<int64_t>(), 1, 3600);
    }
    // A run turned away did not start: its version's circuit breaker is open, or no worker
    // could take it (every worker busy, no descriptor left to start one, or one failed to
    // start).
    bool quarantined = outcome == "circuit-open" ||
                       (answer.body.is_object() &&
                        answer.body.value("type", "") == "urn:corral:problem:circuit-open");
    requeue(std::chrono::seconds(seconds), false,
            std::string(quarantined ? "the version was quarantined by its circuit breaker"
                                    : "corrald turned the run away for now") +
                (failure.empty() ? std::string() : ": " + failure) + "; queued again for " +
                std::to_string(seconds) + " s",
            "deferred");
  } else {
    if (failure.empty()) failure = "the run ended " + outcome;
    finish(store::JobState::failed, "failed");
  }
}

std::optional<std::string> JobService::webhook_secret(const std::string& tenant_id) {
  auto sealed = store_.find_webhook_secret(tenant_id);
  if (!sealed) return std::nullopt;
  return sealer_.open(secret_place(tenant_id), *sealed);
}

bool JobService::has_webhook_secret(const std::string& tenant_id) {
  return store_.find_webhook_secret(tenant_id).has_value();
}

std::string JobService::rotate_webhook_secret(const std::string& tenant_id) {
  ensure_sodium();
  unsigned char bytes[32];
  randombytes_buf(bytes, sizeof bytes);
  std::string secret = "whsec_" + hex(bytes, sizeof bytes);
  store_.put_webhook_secret(tenant_id, sealer_.seal(secret_place(tenant_id), secret),
                            store::now_ms());
  return secret;
}

policy::TenantPolicy JobService::tenant_policy(const std::string& tenant_name) const {
  if (policy_) return policy_->current()->policy.for_tenant(tenant_name);
  return policy::Policy::safe_default().for_tenant(tenant_name);
}

bool JobService::deliver_one() {
  auto delivery = store_.claim_delivery(store::now_ms());
  if (!delivery) return false;
  const int64_t attempt = delivery->attempts;
  auto give_up = [&](std::optional<int64_t> status, const std::string& why) {
    store_.record_delivery_attempt({.id = delivery->id,
                                    .attempt = attempt,
                                    .state = store::DeliveryState::dead,
                                    .status = status,
                                    .error = why,
                                    .next_attempt_at = store::now_ms(),
                                    .at = store::now_ms()});
    metrics_.record_webhook_delivery("dead");
    log(spdlog::level::warn, "a webhook delivery is dead",
        {{"delivery", delivery->id}, {"job", delivery->job_id}, {"reason", why}});
  };
  auto tenant = store_.find_tenant(delivery->tenant_id);
  auto job = store_.find_job(delivery->tenant_id, delivery->job_id);
  if (!tenant || !job) {
    give_up(std::nullopt, "its job or tenant no longer exists");
    return true;
  }
  std::optional<std::string> secret;
  try {
    secret = webhook_secret(tenant->id);
  } catch (const std::exception& error) {
    give_up(std::nullopt, std::string("the tenant's webhook secret does not open: ") +
                              error.what() + "; rotate it with POST /v1/tenants/" + tenant->name +
                              "/webhook-secret");
    return true;
  }
  if (!secret) {
    give_up(std::nullopt, "tenant \"" + tenant->name +
                              "\" has no webhook secret to sign with; an admin sets one with "
                              "POST /v1/tenants/" +
                              tenant->name + "/webhook-secret");
    return true;
  }
  policy::TenantPolicy policy = tenant_policy(tenant->name);
  if (auto refused = check_callback(policy, delivery->url)) {
    give_up(std::nullopt, "the policy in force refuses the callback: " + refused->detail +
                              " (rule: " + refused->rule + ")");
    return true;
  }
  json announced = job_json(*job, tenant->name);
  // The submission asked that its webhook not carry the input (customers' data) to the receiver.
  if (!job->webhook_input) announced["input"] = nullptr;
  std::string body = announced.dump(-1, ' ', false, json::error_handler_t::replace);
  int64_t unix_seconds = store::now_ms() / 1000;
  broker::FetchRequest request{
      .url = delivery->url,
      .method = "POST",
      .headers = {{"Content-Type", "application/json"},
                  {"Corral-Signature", signature_header(*secret, unix_seconds, body)},
                  {"Corral-Delivery-Id", delivery->id},
                  {"Corral-Job-Id", job->id},
                  {"Corral-Delivery-Attempt", std::to_string(attempt)},
                  {"User-Agent", "corrald-webhooks"}},
      .body = body,
      .timeout_ms = 0};
  broker::FetchResult sent = http_.fetch(rules_of(*policy.http), request);

  std::string why;
  std::optional<int64_t> status;
  bool retry = false;
  if (sent.kind == broker::FetchResult::Kind::ok) {
    status = sent.status;
    if (sent.status >= 200 && sent.status < 300) {
      store_.record_delivery_attempt({.id = delivery->id,
                                      .attempt = attempt,
                                      .state = store::DeliveryState::delivered,
                                      .status = status,
                                      .error = "",
                                      .next_attempt_at = store::now_ms(),
                                      .at = store::now_ms()});
      metrics_.record_webhook_delivery("delivered");
      return true;
    }
    why = "the receiver answered " + std::to_string(sent.status);
    retry = sent.status >= 500 || sent.status == 429;
    if (!retry) why += ", which is not retried (only network errors, 429 and 5xx are)";
  } else {
    why = std::string(broker::to_string(sent.kind)) + ": " + sent.message;
    // A refusal by the rules or a malformed request would be refused again.
    retry = sent.kind != broker::FetchResult::Kind::denied &&
            sent.kind != broker::FetchResult::Kind::invalid;
  }
  if (!retry || attempt >= delivery->max_attempts) {
    give_up(status,
            retry ? "gave up after " + std::to_string(attempt) + " tries; the last: " + why : why);
    return true;
  }
  int64_t backoff = delivery->backoff_ms;
  for (int64_t i = 1; i < attempt && backoff < 24ll * 3600 * 1000; ++i) backoff *= 2;
  int64_t now = store::now_ms();
  store_.record_delivery_attempt({.id = delivery->id,
                                  .attempt = attempt,
                                  .state = store::DeliveryState::pending,
                                  .status = status,
                                  .error = why,
                                  .next_attempt_at = now + backoff,
                                  .at = now});
  metrics_.record_webhook_delivery("retry");
  return true;
}

}  // namespace corral::jobs

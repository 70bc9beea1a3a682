// The operator's alert webhook (corrald --alert-webhook URL): every anomaly alert raised or
// cleared (anomaly_detector.h) is POSTed as JSON, signed as job webhooks are
// (jobs::signature_header: Corral-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
// "<t>.<body>")>), by a thread of its own so that the invocation that caused the alert never
// waits on the receiver.
//
// - The URL is the operator's, not a tenant's: no policy grant applies, and it may name a private
//   or loopback address (the operator's own alerting service). http or https only.
// - A delivery is tried up to `attempts` times: 2xx is delivered; network errors, 429 and 5xx are
//   tried again after backoff × 2^(try - 1); anything else, or the last failure, drops it, logged
//   as "an alert webhook delivery failed" with the reason.
// - Deliveries are held in memory, at most max_pending (past it the oldest is dropped and logged):
//   the alert itself is in the log and the audit trail, which are durable; the webhook is a
//   notification. What is pending when corrald stops is dropped (logged with the count).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "broker/http_fetch.h"

namespace corral::alerts {

// The key alert webhooks are signed with: <data_dir>/alert-webhook.secret, made on first use (64
// hex digits, mode 0600) so that the operator's receiver can read it from there. created says
// whether this call made it. Throws std::runtime_error naming the file when it cannot be read or
// made.
struct WebhookSecret {
  std::string secret;
  std::string file;
  bool created = false;
};
WebhookSecret open_or_create_webhook_secret(const std::string& data_dir);

class AlertWebhook {
 public:
  struct Options {
    std::string url;
    std::string secret;  // the HMAC key
    int64_t attempts = 5;
    std::chrono::milliseconds backoff{1000};
    size_t max_pending = 1000;
  };

  // What is wrong with `url` as an alert webhook, in a sentence; nullopt when it will do.
  static std::optional<std::string> url_problem(std::string_view url);

  explicit AlertWebhook(Options options);
  ~AlertWebhook();
  AlertWebhook(const AlertWebhook&) = delete;
  AlertWebhook& operator=(const AlertWebhook&) = delete;

  // Queues `alert` for delivery (its "id" member, when present, is sent as Corral-Alert-Id).
  void send(const nlohmann::json& alert);

 private:
  struct Pending {
    std::string id;
    std::string body;
    int64_t attempt = 1;
    std::chrono::steady_clock::time_point due;
  };
  void run();
  // One try; true when it is settled (delivered, or dropped for good).
  bool deliver(Pending& pending);

  const Options options_;
  broker::HttpRules rules_;
  broker::HttpFetcher http_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::deque<Pending> pending_;
  std::thread sender_;
};

}  // namespace corral::alerts

#include "alerts/alert_webhook.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "invocation/random_bytes.h"
#include "jobs/jobs.h"
#include "store/store.h"

namespace corral::alerts {

namespace {

using nlohmann::json;

void log(spdlog::level::level_enum level, const std::string& message, json fields) {
  fields["level"] = spdlog::level::to_string_view(level).data();
  fields["msg"] = message;
  spdlog::log(level, fields.dump(-1, ' ', false, json::error_handler_t::replace));
}

// "scheme://host[:port]" of an absolute http(s) URL.
std::optional<std::string> origin_of(std::string_view url) {
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::nullopt;
  std::string_view scheme = url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https") return std::nullopt;
  std::string_view rest = url.substr(scheme_end + 3);
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  // One receiver: no user name (credentials do not belong in a URL) and no wildcard.
  if (authority.empty() || authority.find_first_of("@*") != std::string_view::npos)
    return std::nullopt;
  return std::string(scheme) + "://" + std::string(authority);
}

}  // namespace

WebhookSecret open_or_create_webhook_secret(const std::string& data_dir) {
  WebhookSecret made;
  made.file = data_dir + "/alert-webhook.secret";
  int fd = ::open(made.file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    unsigned char bytes[32];
    fill_unpredictable(bytes, sizeof bytes);
    static constexpr char kDigits[] = "0123456789abcdef";
    for (unsigned char byte : bytes) {
      made.secret.push_back(kDigits[byte >> 4]);
      made.secret.push_back(kDigits[byte & 0xf]);
    }
    std::string line = made.secret + "\n";
    bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    written = ::fsync(fd) == 0 && written;
    ::close(fd);
    if (!written) {
      ::unlink(made.file.c_str());
      throw std::runtime_error("cannot write the alert webhook secret to " + made.file + ": " +
                               std::strerror(errno) + "; check the data directory's space");
    }
    made.created = true;
    return made;
  }
  if (errno != EEXIST) {
    throw std::runtime_error("cannot create the alert webhook secret " + made.file + ": " +
                             std::strerror(errno) + "; check the data directory's permissions");
  }
  std::ifstream file(made.file);
  std::getline(file, made.secret);
  while (!made.secret.empty() && std::isspace(static_cast<unsigned char>(made.secret.back())))
    made.secret.pop_back();
  if (!file && !file.eof()) made.secret.clear();
  if (made.secret.empty()) {
    throw std::runtime_error("the alert webhook secret " + made.file +
                             " is empty or unreadable; delete it and corrald makes a new one (and "
                             "give the receiver the new one)");
  }
  return made;
}

std::optional<std::string> AlertWebhook::url_problem(std::string_view url) {
  auto origin = origin_of(url);
  if (!origin)
    return "\"" + std::string(url) +
           "\" is not an absolute http or https URL naming one host (no user name, no *); write "
           "e.g. "
           "https://alerts.example.com/corral";
  broker::HttpRules rules{.allow = {*origin}};
  auto problems = broker::validate_rules(rules);
  if (!problems.empty())
    return "\"" + std::string(url) + "\": " + problems.front() +
           "; write e.g. https://alerts.example.com/corral";
  return std::nullopt;
}

AlertWebhook::AlertWebhook(Options options) : options_(std::move(options)) {
  // The operator chose the receiver: any address it resolves to may be reached, private ones too.
  rules_.allow = {origin_of(options_.url).value_or("")};
  rules_.allow_private = {"0.0.0.0/0", "::/0"};
  rules_.timeout_ms = 10'000;
  rules_.max_redirects = 0;
  rules_.max_request_bytes = 1 << 20;
  sender_ = std::thread([this] { run(); });
}

AlertWebhook::~AlertWebhook() {
  size_t dropped = 0;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    dropped = pending_.size();
  }
  wake_.notify_all();
  sender_.join();
  if (dropped > 0) {
    log(spdlog::level::warn, "alert webhook deliveries dropped at stop",
        {{"count", dropped},
         {"hint",
          "the alerts are in the log and the audit trail (actions alert.raised and "
          "alert.cleared)"}});
  }
}

void AlertWebhook::send(const json& alert) {
  Pending pending{.id = alert.value("id", ""),
                  .body = alert.dump(-1, ' ', false, json::error_handler_t::replace),
                  .attempt = 1,
                  .due = std::chrono::steady_clock::now()};
  {
    std::lock_guard lock(mutex_);
    if (pending_.size() >= std::max<size_t>(options_.max_pending, 1)) {
      log(spdlog::level::warn, "an alert webhook delivery failed",
          {{"alert", pending_.front().id},
           {"reason", "more than " + std::to_string(options_.max_pending) +
                          " alert deliveries were waiting; the oldest was dropped"},
           {"hint", "check that the receiver of --alert-webhook is up and answers 2xx"}});
      pending_.pop_front();
    }
    pending_.push_back(std::move(pending));
  }
  wake_.notify_all();
}

void AlertWebhook::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (pending_.empty()) {
      wake_.wait(lock);
      continue;
    }
    auto due = std::min_element(pending_.begin(), pending_.end(),
                                [](const Pending& a, const Pending& b) { return a.due < b.due; });
    if (due->due > std::chrono::steady_clock::now()) {
      wake_.wait_until(lock, due->due);
      continue;
    }
    Pending taken = std::move(*due);
    pending_.erase(due);
    lock.unlock();
    bool settled = deliver(taken);
    lock.lock();
    if (!settled) pending_.push_back(std::move(taken));
  }
}

bool AlertWebhook::deliver(Pending& pending) {
  int64_t unix_seconds = store::now_ms() / 1000;
  broker::FetchRequest request{
      .url = options_.url,
      .method = "POST",
      .headers = {{"Content-Type", "application/json"},
                  {"Corral-Signature",
                   jobs::signature_header(options_.secret, unix_seconds, pending.body)},
                  {"Corral-Alert-Id", pending.id},
                  {"Corral-Delivery-Attempt", std::to_string(pending.attempt)},
                  {"User-Agent", "corrald-alerts"}},
      .body = pending.body,
      .timeout_ms = 0};
  broker::FetchResult sent = http_.fetch(rules_, request);
  std::string why;
  bool retry = false;
  if (sent.kind == broker::FetchResult::Kind::ok) {
    if (sent.status >= 200 && sent.status < 300) return true;
    why = "the receiver answered " + std::to_string(sent.status);
    retry = sent.status >= 500 || sent.status == 429;
  } else {
    why = std::string(broker::to_string(sent.kind)) + ": " + sent.message;
    retry = sent.kind != broker::FetchResult::Kind::denied &&
            sent.kind != broker::FetchResult::Kind::invalid;
  }
  if (retry && pending.attempt < options_.attempts) {
    auto backoff = options_.backoff * (int64_t{1} << std::min<int64_t>(pending.attempt - 1, 20));
    pending.due = std::chrono::steady_clock::now() + backoff;
    ++pending.attempt;
    return false;
  }
  log(spdlog::level::warn, "an alert webhook delivery failed",
      {{"alert", pending.id},
       {"attempts", pending.attempt},
       {"reason", why},
       {"hint",
        "check that the receiver of --alert-webhook is up and answers 2xx; the alert is "
        "in the log and the audit trail"}});
  return true;
}

}  // namespace corral::alerts

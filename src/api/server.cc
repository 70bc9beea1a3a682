#include "api/server.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "api/refusal_log.h"
#include "api/responses.h"
#include "invocation/cpu_lane.h"
#include "net/ip_address.h"
#include "sched/connection_limit.h"
#include "sched/fair_queue.h"
#include "sched/rate_buckets.h"
#include "sched/refusal_holds.h"

namespace corral::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

class Session;

namespace {
std::string iso8601_now();
// Refusals that shed load are logged at most once per kind in this window (refusal_log.h).
constexpr auto kRefusalLogWindow = std::chrono::seconds(10);
}  // namespace

// A CPU lane (ServerOptions::lanes): its own listening socket, I/O threads and fair queue with
// its invocation threads, all pinned to one CPU when there are several lanes, so that a request
// is read, run (its worker joins the lane's CPU: cpu_lane.h) and answered without waking a thread
// on another CPU.
struct Lane {
  Lane(size_t index, int cpu, const ServerOptions& options, unsigned lanes)
      : index(index),
        cpu(cpu),
        acceptor(asio::make_strand(io)),
        queue({.workers = share(std::max(1u, options.invocation_threads), lanes),
               .per_key_depth = std::max<size_t>(1, options.tenant_queue_depth),
               .max_queued = share(std::max<size_t>(1, options.max_queued), lanes),
               .on_worker_start = [index, cpu] { name_and_pin_this_thread("run", index, cpu); },
               // A tenant whose runs are long cannot hold every thread while others keep coming.
               .leave_one_for_others = true}) {}

  // A lane's share of a count given for the whole server: never below 1.
  template <typename Count>
  static Count share(Count total, unsigned lanes) {
    return std::max<Count>(1, (total + lanes - 1) / lanes);
  }

  // Pinned first, so that a thread seen by its name (in top -H, or by a test) is already pinned.
  static void name_and_pin_this_thread(const char* role, size_t lane, int cpu) {
    if (cpu >= 0) pin_this_thread_to(cpu);
    std::string name = std::string(role) + "-lane" + std::to_string(lane);
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
  }

  // The access log of the lane's requests. A line waits for the handlers the I/O thread already
  // has ready (other connections' requests and answers), and then all are written at once: under
  // load one write serves several requests, and an idle server writes each line a moment after
  // its answer, as nginx does. Lines of server errors (5xx) are written at once.
  void log_access(std::string line, bool server_error) {
    std::unique_lock lock(access_log_mutex);
    if (server_error) {
      std::string pending = std::exchange(access_log, {});
      lock.unlock();
      if (!pending.empty()) spdlog::info(pending);
      spdlog::info(line);
      return;
    }
    if (!access_log.empty()) access_log += '\n';
    access_log += line;
    if (access_log_flush_posted) return;
    access_log_flush_posted = true;
    asio::post(io, [this] { flush_access_log(); });
  }

  void flush_access_log() {
    std::unique_lock lock(access_log_mutex);
    access_log_flush_posted = false;
    std::string pending = std::exchange(access_log, {});
    lock.unlock();
    if (!pending.empty()) spdlog::info(pending);  // the logger ends it with a newline
  }

  const size_t index;
  const int cpu;  // -1: not pinned (a single lane)
  asio::io_context io;
  tcp::acceptor acceptor;
  // Trying again a moment later: to admit a connection at --max-connections, or to accept one
  // when out of descriptors. On the acceptor's strand, as is everything below it that accept()
  // and admit() touch.
  asio::steady_timer accept_retry{acceptor.get_executor()};
  bool at_cap = false;  // admit() found every place under --max-connections taken
  Clock::time_point last_accept_warning{};
  uint64_t accept_warnings_suppressed = 0;
  sched::FairQueue queue;
  std::mutex access_log_mutex;
  std::string access_log;  // lines not yet written, joined by newlines
  bool access_log_flush_posted = false;
};

struct Server::State : std::enable_shared_from_this<Server::State> {
  State(ServerOptions options_in, Api& api, metrics::Registry& metrics)
      : options(std::move(options_in)),
        api(api),
        metrics(metrics),
        connection_limit(options.max_connections_per_client),
        connection_cap(options.max_connections) {
    unsigned count = std::max(1u, options.lanes);
    const std::vector<int>& cpus = allowed_cpus();
    for (unsigned i = 0; i < count; ++i) {
      int cpu = count > 1 ? cpus[i % cpus.size()] : -1;
      lanes.push_back(std::make_unique<Lane>(i, cpu, options, count));
    }
    metrics.set_lanes(count);
    metrics.watch_connections_open([this] { return connection_cap.open(); });
    refusal_timer = std::make_unique<asio::steady_timer>(lanes.front()->io);
  }

  ServerOptions options;
  Api& api;
  metrics::Registry& metrics;
  std::vector<std::unique_ptr<Lane>> lanes;
  std::atomic<bool> stopping{false};
  // Shared by every lane: the kernel spreads one client's connections over them.
  sched::RefusalHolds refusal_holds;
  sched::RateBuckets denial_budget;  // per client: ServerOptions::denials_per_client_per_minute
  sched::ConnectionLimit connection_limit;
  sched::ConnectionCap connection_cap;

  std::mutex sessions_mutex;
  std::list<std::weak_ptr<Session>> sessions;

  RefusalLog refusal_log{kRefusalLogWindow, [](nlohmann::json line) {
                           line["time"] = iso8601_now();
                           spdlog::warn(line.dump());
                         }};
  // Writes the refusal log's counts when due; on the first lane's io_context, and touched only
  // under refusal_timer_mutex.
  std::mutex refusal_timer_mutex;
  std::unique_ptr<asio::steady_timer> refusal_timer;
  bool refusal_timer_armed = false;
  void note_refusal(std::string_view kind, std::string_view route, int status) {
    if (auto due = refusal_log.note(kind, route, status, Clock::now())) arm_refusal_timer(*due);
  }
  void arm_refusal_timer(Clock::time_point due);

  void accept(Lane& lane);
  void admit(Lane& lane, tcp::socket socket);
  void warn_about_accepting(Lane& lane, const std::string& message, const std::string& hint);
  void track(const std::shared_ptr<Session>& session);
  size_t queued() const {
    size_t total = 0;
    for (const auto& lane : lanes) total += lane->queue.queued();
    return total;
  }
};

namespace {

std::string_view view(boost::beast::string_view text) { return {text.data(), text.size()}; }

// A 503 or 507 with Retry-After sheds load (refusal_log.h): its problem type's slug, else "".
std::string load_shedding_kind(const Response& response) {
  if (response.status != 503 && response.status != 507) return {};
  bool retry_after =
      std::any_of(response.headers.begin(), response.headers.end(),
                  [](const auto& header) { return beast::iequals(header.first, "Retry-After"); });
  if (!retry_after) return {};
  constexpr std::string_view kType = "\"type\":\"urn:corral:problem:";
  auto start = response.body.find(kType);
  if (start == std::string::npos) return "unavailable";
  start += kType.size();
  auto end = response.body.find('"', start);
  if (end == std::string::npos || end - start > 64) return "unavailable";
  return response.body.substr(start, end - start);
}

// What makes a request's length ambiguous (RFC 9112 section 6.3), or nothing. Beast frames a
// body by Transfer-Encoding only when its last coding is chunked, and reads any other coding
// (gzip, xchunked, "chunked, chunked") as no body at all, leaving the body's bytes to be parsed as
// the next request: a proxy in front that frames it otherwise would let a request be smuggled
// past it. So every Transfer-Encoding but one "chunked" alone is refused, as are Content-Length
// given twice or as anything but digits, and the two together.
std::optional<std::string> framing_problem(const http::request_header<>& header) {
  size_t encodings = 0, lengths = 0;
  std::string_view encoding, length;
  for (const auto& field : header) {
    if (field.name() == http::field::transfer_encoding) {
      ++encodings;
      encoding = view(field.value());
    } else if (field.name() == http::field::content_length) {
      ++lengths;
      length = view(field.value());
    } else if (beast::iequals(field.name_string(), "transfer_encoding") ||
               beast::iequals(field.name_string(), "content_length")) {
      // Some proxies read '_' in a name as '-', others drop the field: either way they would
      // frame the request otherwise than corrald, which reads neither.
      return "the request has a header \"" + std::string(view(field.name_string())) +
             "\", which some proxies take for \"" +
             (beast::iequals(field.name_string(), "content_length") ? "Content-Length"
                                                                    : "Transfer-Encoding") +
             "\"";
    }
  }
  auto shown = [](std::string_view value) {
    constexpr size_t kShown = 64;
    return "\"" + std::string(value.substr(0, kShown)) + (value.size() > kShown ? "…" : "") + "\"";
  };
  auto trimmed = [](std::string_view value) {
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    return value;
  };
  if (encodings > 1) {
    return "the request has " + std::to_string(encodings) + " Transfer-Encoding headers";
  }
  std::string_view coding = trimmed(encoding);
  if (encodings == 1 &&
      !beast::iequals(beast::string_view(coding.data(), coding.size()), "chunked")) {
    return "the request's Transfer-Encoding is " + shown(encoding) +
           ": corrald reads a body sent in chunks (\"chunked\" alone) and no other coding";
  }
  if (encodings == 1 && lengths > 0) {
    return "the request has both Transfer-Encoding and Content-Length";
  }
  if (encodings == 1 && header.version() < 11) {
    return "the request is HTTP/1.0, which has no Transfer-Encoding";
  }
  if (lengths > 1) {
    return "the request has " + std::to_string(lengths) + " Content-Length headers";
  }
  if (lengths == 1) {
    std::string_view digits = trimmed(length);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos) {
      return "the request's Content-Length is " + shown(length) + ", not a decimal number";
    }
  }
  return std::nullopt;
}

double elapsed_ms(Clock::time_point since) {
  return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

// How long a connection over max_connections_per_client may take to send the request that is
// answered with the refusal.
constexpr int64_t kOverLimitReadMs = 2'000;

std::string iso8601_now() {
  auto now = std::chrono::system_clock::now();
  std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[96];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<int>(millis.count()));
  return text;
}

}  // namespace

// One TCP connection: reads requests one after another (keep-alive), answers each, and runs
// invocations through its lane's fair queue, coming back to its strand to write the answer.
//
// A connection from a client address that has max_connections_per_client open already comes
// without a slot: its first request is read (for at most kOverLimitReadMs) and answered with a
// 429, and the connection is closed.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Server::State> state, Lane& lane,
          const tcp::endpoint& remote, std::string client,
          std::optional<sched::ConnectionLimit::Slot> slot, sched::ConnectionCap::Place place)
      : stream_(std::move(socket)),
        state_(std::move(state)),
        lane_(lane),
        client_(std::move(client)),
        remote_(remote.address().to_string() + ":" + std::to_string(remote.port())),
        slot_(std::move(slot)),
        place_(std::move(place)) {}

  void start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_request(); });
  }

  // Called on shutdown: a connection waiting for its next request is closed now; one in the
  // middle of a request finishes it and closes after answering.
  void close_if_idle() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->holding_) {
        self->hold_timer_.cancel();  // the held request is routed now, and answered on the way out
      } else if (self->awaiting_request_) {
        beast::error_code ignored;
        self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
        self->stream_.close();
      }
    });
  }

 private:
  void read_request() {
    if (state_->stopping) return close();
    parser_.emplace();
    parser_->body_limit(state_->options.max_body_bytes);
    awaiting_request_ = true;
    stream_.expires_after(std::chrono::milliseconds(
        slot_ ? state_->options.idle_timeout_ms
              : std::min(kOverLimitReadMs, state_->options.idle_timeout_ms)));
    // The header first, so that its framing is checked before a byte of the body is read, and
    // before what follows it could be taken for the next request.
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code error, size_t) { self->on_header(error); });
  }

  void on_header(beast::error_code error) {
    if (error) return on_read(error);
    if (auto problem_text = framing_problem(parser_->get())) {
      awaiting_request_ = false;
      started_ = Clock::now();
      keep_alive_ = false;
      unread_request_ = true;  // the body, however framed, is drained and never parsed
      request_ = parser_->release();
      route_.clear();
      return send(problem(400, "bad-http", "The request's length is ambiguous",
                          *problem_text + "; it was refused and the connection closed, so that "
                                          "no byte of its body can be read as another request",
                          "send the body with one Content-Length (digits only) or with "
                          "\"Transfer-Encoding: chunked\" alone, never both"));
    }
    if (parser_->is_done()) return on_read(error);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code error, size_t) { self->on_read(error); });
  }

  void on_read(beast::error_code error) {
    awaiting_request_ = false;
    started_ = Clock::now();
    if (error == http::error::end_of_stream || error == asio::error::operation_aborted ||
        error == beast::error::timeout || error == asio::error::bad_descriptor) {
      return close();
    }
    if (error == http::error::header_limit) {
      keep_alive_ = false;
      unread_request_ = true;
      request_ = {};
      return send(
          problem(431, "headers-too-large", "The request line and headers are too large",
                  "the request line and headers exceed 8 KiB (names in paths are at most 64 "
                  "characters)",
                  "shorten the path and the headers"));
    }
    if (error == http::error::body_limit) {
      keep_alive_ = false;
      unread_request_ = true;
      request_ = parser_->release();
      return send(problem(413, "body-too-large", "The request body is too large",
                          "the body exceeds this server's limit of " +
                              std::to_string(state_->options.max_body_bytes) + " bytes",
                          "send a smaller script or input, or ask the operator to raise "
                          "--max-body-bytes"));
    }
    if (error == http::error::bad_content_length || error == http::error::bad_transfer_encoding) {
      keep_alive_ = false;
      request_ = {};
      return send(problem(400, "bad-http", "The request's length is ambiguous",
                          error == http::error::bad_content_length
                              ? "Content-Length is not a decimal number, is given twice with "
                                "different values, or comes with Transfer-Encoding"
                              : "Transfer-Encoding is given twice or comes with Content-Length",
                          "send the body with one Content-Length (digits only) or with "
                          "\"Transfer-Encoding: chunked\" alone, never both"));
    }
    if (error) {
      keep_alive_ = false;
      request_ = {};
      return send(problem(400, "bad-http", "The request is not valid HTTP/1.1",
                          "the HTTP parser stopped: " + error.message(),
                          "send a well-formed HTTP/1.1 request"));
    }
    request_ = parser_->release();
    keep_alive_ = request_.keep_alive();
    stream_.expires_never();
    route_ = route_name(view(request_.target()));
    if (!slot_) return refuse_connection();
    if (state_->refusal_holds.any()) {
      if (auto until = state_->refusal_holds.held_until(refusal_key(), Clock::now())) {
        return hold(*until);
      }
    }
    route();
  }

  void route() {
    http::verb method = request_.method();
    if (route_ == "/healthz" && method == http::verb::get) {
      nlohmann::json health = {{"status", state_->stopping ? "stopping" : "ok"},
                               {"layers", state_->options.layers}};
      if (auto version = state_->api.policy_version()) health["policy_version"] = *version;
      return send({.status = 200,
                   .content_type = "application/json",
                   .body = health.dump(),
                   .headers = {}});
    }
    if (route_ == "/metrics" && method == http::verb::get) {
      state_->metrics.set_requests_queued(static_cast<int64_t>(state_->queued()));
      return send({.status = 200,
                   .content_type = "text/plain; version=0.0.4; charset=utf-8",
                   .body = state_->metrics.render(),
                   .headers = {}});
    }
    HttpRequest request{.method = std::string(request_.method_string()),
                        .target = std::string(request_.target()),
                        .authorization = std::string(request_[http::field::authorization]),
                        .content_type = std::string(request_[http::field::content_type]),
                        .body = std::move(request_.body()),
                        .idempotency_key = std::string(request_["Idempotency-Key"]),
                        .client = client_};
    // The token is checked here, before the request may take a place in any tenant's queue: an
    // unauthenticated request is answered now and touches no tenant's capacity, and a token's
    // request waits in its own tenant's queue, whatever tenant its path names.
    Gate gate = state_->api.gate(request);
    if (gate.answer) {
      invocation_id_ = gate.answer->invocation_id;
      outcome_ = gate.answer->outcome;
      names_ = std::move(gate.answer->names);
      return send(std::move(*gate.answer));
    }
    std::string key = std::move(gate.queue_key);
    auto refused = lane_.queue.submit(
        key, [self = shared_from_this(), request = std::move(request),
              // Keeps the I/O side running until the answer has been handed back.
              guard = asio::make_work_guard(stream_.get_executor())](
                 std::chrono::nanoseconds waited) mutable {
          self->state_->metrics.record_queue_wait(std::chrono::duration<double>(waited).count());
          Response response = self->state_->api.handle(request);
          asio::post(guard.get_executor(), [self, response = std::move(response)]() mutable {
            self->invocation_id_ = response.invocation_id;
            self->outcome_ = response.outcome;
            self->names_ = std::move(response.names);
            self->send(std::move(response));
          });
        });
    if (refused) refuse(key, *refused);
  }

  // A full queue, or all queues at their global bound: answered now, from the I/O thread, so
  // that a flood costs a parse and a write, and never a worker's time.
  void refuse(const std::string& key, const sched::QueueRejection& refusal) {
    const auto& options = state_->options;
    bool invocation =
        route_ == "/v1/run" || route_ == "/v1/tenants/{tenant}/scripts/{script}/invoke";
    std::string reason(sched::to_string(refusal.bound));
    state_->metrics.record_queue_rejection(reason, invocation);
    std::string retry = std::to_string(refusal.retry_after_seconds);
    std::string threads = std::to_string(std::max(1u, options.invocation_threads));
    if (state_->lanes.size() > 1) {
      threads +=
          " (in " + std::to_string(state_->lanes.size()) + " lanes, each queueing on its own)";
    }
    auto queued = [&](size_t count) {
      std::string text = std::to_string(count) + (count == 1 ? " request" : " requests");
      if (key.empty()) {
        return text + (count == 1 ? " that names" : " that name") +
               " no tenant (such as POST /v1/run) " + (count == 1 ? "is" : "are") + " queued";
      }
      return "tenant \"" + key + "\" has " + text + " queued";
    };
    nlohmann::json extra = {{"retry_after", refusal.retry_after_seconds},
                            {"queue",
                             {{"reason", reason},
                              {"queued", refusal.key_queued},
                              {"queued_in_all", refusal.total_queued},
                              {"bound", refusal.limit},
                              {"invocation_threads", std::max(1u, options.invocation_threads)}}}};
    if (!key.empty()) extra["tenant"] = key;
    if (invocation) {
      invocation_id_ = new_invocation_id();
      outcome_ = "rejected";
      extra["outcome"] = "rejected";
    }
    Response response;
    switch (refusal.bound) {
      case sched::QueueRejection::Bound::key_depth:
        response = problem(
            503, "queue-full", "The tenant's queue is full",
            queued(refusal.key_queued) + " for corrald's " + threads +
                " invocation threads, the most one tenant may have waiting (--tenant-queue-depth " +
                std::to_string(refusal.limit) + ")",
            "send the request again in " + retry +
                " s (Retry-After) and keep fewer requests in flight; to let a tenant queue more, "
                "the operator can raise --tenant-queue-depth",
            invocation_id_, extra);
        break;
      case sched::QueueRejection::Bound::global:
        response = problem(
            503, "overloaded", "corrald is overloaded",
            "corrald has " + std::to_string(refusal.total_queued) + " requests queued for its " +
                threads + " invocation threads, its global bound (--max-queued " +
                std::to_string(refusal.limit) + "), of which " + queued(refusal.key_queued),
            "send the request again in " + retry +
                " s (Retry-After); if this persists, the operator can raise --max-queued or "
                "--invocation-threads, or add nodes",
            invocation_id_, extra);
        break;
      case sched::QueueRejection::Bound::stopping:
        response = problem(503, "stopping", "corrald is stopping",
                           "corrald is shutting down and takes no new requests",
                           "send the request again in " + retry +
                               " s (Retry-After), to this node once it is back or to another node",
                           invocation_id_, extra);
        break;
    }
    response.headers.emplace_back("Retry-After", retry);
    send(std::move(response));
  }

  // The client address had max_connections_per_client open when this one was accepted. Not a
  // refusal that holds (refusal_holds.h): the client's other connections are within the limit,
  // and a client that reuses them is doing what it is asked to.
  void refuse_connection() {
    keep_alive_ = false;
    state_->metrics.record_connection_refusal();
    size_t limit = state_->connection_limit.per_client();
    Response response = problem(
        429, "too-many-connections", "Too many connections from this client",
        (client_.ends_with("/64") ? "the client addresses in " : "the client address ") + client_ +
            " had " + std::to_string(limit) +
            " connections open to corrald when this one was made, the most one client may have "
            "(--max-connections-per-client " +
            std::to_string(limit) + "; an IPv6 /64 counts as one client)",
        "send requests over the connections already open (keep-alive) or close some, and send "
        "this one again in 1 s (Retry-After); clients behind one proxy or NAT share its address, "
        "so the operator may need to raise --max-connections-per-client (0: no limit)");
    response.headers.emplace_back("Retry-After", "1");
    send(std::move(response));
  }

  // A denial its caller can repeat at will waits, while the client is over its budget of them,
  // until the budget allows (at most refusal_hold_ms): a flood of bad tokens or probes is paced to
  // one answer per wait per connection, and costs the other tenants no more than that.
  bool pace(Response& response) {
    if (!response.paced_per_client || state_->stopping || state_->options.refusal_hold_ms <= 0)
      return false;
    auto wait = state_->denial_budget.take(client_, state_->options.denials_per_client_per_minute,
                                           std::chrono::steady_clock::now());
    if (!wait) return false;
    holding_ = true;
    state_->metrics.record_refusal_hold();
    hold_timer_.expires_after(std::chrono::milliseconds(
        std::min<int64_t>(*wait * 1000, state_->options.refusal_hold_ms)));
    hold_timer_.async_wait(
        [self = shared_from_this(), response = std::move(response)](beast::error_code) mutable {
          // Run out or cancelled by a stop: either way the answer goes now.
          self->holding_ = false;
          response.paced_per_client = false;
          self->send(std::move(response));
        });
    return true;
  }

  void send(Response response) {
    if (pace(response)) return;
    if (state_->stopping) keep_alive_ = false;
    auto message = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(response.status), request_.version() ? request_.version() : 11);
    message->set(http::field::server, "corrald");
    message->set(http::field::content_type, response.content_type);
    message->set(http::field::cache_control, "no-store");
    if (!invocation_id_.empty()) message->set("Corral-Invocation-Id", invocation_id_);
    for (const auto& [name, value] : response.headers) message->set(name, value);
    message->keep_alive(keep_alive_);
    std::string shed_kind = load_shedding_kind(response);
    message->body() = std::move(response.body);
    message->prepare_payload();
    log_request(response.status, shed_kind);
    if (slot_) remember_refusal(response);
    http::async_write(stream_, *message,
                      [self = shared_from_this(), message](beast::error_code error, size_t) {
                        self->on_write(error);
                      });
  }

  void on_write(beast::error_code error) {
    invocation_id_.clear();
    route_.clear();
    outcome_.clear();
    names_ = {};
    if (error || !keep_alive_) return close();
    read_request();
  }

  // The refusal hold (issue 6, noisy neighbour; sched/refusal_holds.h). A refusal that tells the
  // client when to come back (429 or 503 with Retry-After) is remembered for the request it
  // refused: the same credentials sending the same request again (method, route, tenant and
  // script, names percent-decoded) before min(Retry-After, --refusal-hold-ms), on this connection
  // or any other, wait out the rest before it is handled. A client that honours Retry-After never
  // notices, and a flood is paced to one request per hold per connection, whether it reuses its
  // connections or opens new ones (of which it may have max_connections_per_client), so refusing
  // it cannot take the machine from the tenants within their quotas. Other requests (another
  // token, another tenant or script, a read after a refused invocation; a proxy sharing its
  // upstream connections) are served at once.
  std::string refusal_key() const {
    std::string_view target = view(request_.target());
    std::string key(request_[http::field::authorization]);
    key += '\n';
    key += view(request_.method_string());
    key += '\n';
    key += route_;
    key += '\n';
    key += queue_key(target);
    key += '\n';
    key += script_key(target);
    return key;
  }

  void remember_refusal(const Response& response) {
    if (response.status != 429 && response.status != 503) return;
    for (const auto& [name, value] : response.headers) {
      if (!beast::iequals(name, "Retry-After")) continue;
      int64_t seconds = 0;
      auto [end, failed] = std::from_chars(value.data(), value.data() + value.size(), seconds);
      if (failed != std::errc() || end != value.data() + value.size() || seconds <= 0) return;
      auto hold = std::min<int64_t>(seconds * 1000, state_->options.refusal_hold_ms);
      if (hold <= 0) return;
      auto now = Clock::now();
      state_->refusal_holds.remember(refusal_key(), now + std::chrono::milliseconds(hold), now);
      return;
    }
  }

  void hold(Clock::time_point until) {
    holding_ = true;
    state_->metrics.record_refusal_hold();
    hold_timer_.expires_at(until);
    hold_timer_.async_wait([self = shared_from_this()](beast::error_code) {
      // Run out or cancelled by a stop: either way the request is handled now.
      self->holding_ = false;
      self->route();  // its logged duration includes the hold: what the client waited
    });
  }

  // The access log: one JSON line per request, written out by hand rather than built as a json
  // object, since it is on the path of every request (it was an eighth of corrald's user CPU).
  // A refusal that sheds load (`shed_kind`, a 503 or 507 with Retry-After) is counted in the
  // refusal log instead, which a flood cannot fill (refusal_log.h).
  void log_request(int status, std::string_view shed_kind) {
    std::string route = route_.empty() ? std::string("other") : route_;
    state_->metrics.record_http_request(route, status);
    if (!shed_kind.empty()) return state_->note_refusal(shed_kind, route, status);
    char duration[32];
    std::snprintf(duration, sizeof duration, "%.3f", elapsed_ms(started_));
    std::string line;
    line.reserve(256);
    line += "{\"duration_ms\":";
    line += duration;
    if (!names_.alias.empty()) append_json_member(line, "alias", names_.alias);
    if (!invocation_id_.empty()) append_json_member(line, "invocation_id", invocation_id_);
    append_json_member(line, "level", status >= 500 ? "error" : "info");
    append_json_member(line, "method", view(request_.method_string()));
    append_json_member(line, "msg", "request");
    if (!outcome_.empty()) append_json_member(line, "outcome", outcome_);
    append_json_member(line, "remote", remote_);
    append_json_member(line, "route", route);
    if (!names_.script.empty()) append_json_member(line, "script", names_.script);
    line += ",\"status\":" + std::to_string(status);
    if (!names_.subject.empty()) append_json_member(line, "subject", names_.subject);
    if (!names_.tenant.empty()) append_json_member(line, "tenant", names_.tenant);
    append_json_member(line, "time", iso8601_now());
    if (names_.version > 0) line += ",\"version\":" + std::to_string(names_.version);
    line += '}';
    lane_.log_access(std::move(line), status >= 500);
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    if (unread_request_) return drain();
    stream_.close();
  }

  // After refusing a request whose body or headers were not read, closing at once would make the
  // kernel answer the client's remaining bytes with a reset, which can destroy the response before
  // the client reads it. So read and discard what the client still sends, for a bounded time.
  void drain() {
    if (!drain_buffer_) {
      drain_buffer_ = std::make_shared<std::array<char, 64 * 1024>>();
      stream_.expires_after(std::chrono::seconds(2));
    }
    stream_.async_read_some(asio::buffer(*drain_buffer_),
                            [self = shared_from_this()](beast::error_code error, size_t) {
                              if (error) {
                                self->stream_.close();
                                return;
                              }
                              self->drain();
                            });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::shared_ptr<Server::State> state_;
  Lane& lane_;  // owned by state_
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> request_;
  const std::string client_;  // what max_connections_per_client counts: sched::client_key()
  const std::string remote_;  // address:port, for the access log
  // This connection's place under max_connections_per_client; none: over the limit, refused.
  std::optional<sched::ConnectionLimit::Slot> slot_;
  std::optional<sched::ConnectionCap::Place> place_;  // under max_connections, until destroyed
  std::string invocation_id_;
  std::string outcome_;
  Response::Names names_;  // tenant, script, version, alias, subject: for the access log
  std::string route_;      // the route pattern, for metrics and the log: never the raw target
  Clock::time_point started_ = Clock::now();
  bool keep_alive_ = true;
  bool unread_request_ = false;  // refused before the whole request was read: drain on close
  std::shared_ptr<std::array<char, 64 * 1024>> drain_buffer_;
  bool awaiting_request_ = false;
  asio::steady_timer hold_timer_{stream_.get_executor()};
  bool holding_ = false;  // a request waits out a refusal's hold before it is routed
};

void Server::State::track(const std::shared_ptr<Session>& session) {
  std::lock_guard lock(sessions_mutex);
  sessions.remove_if([](const std::weak_ptr<Session>& entry) { return entry.expired(); });
  sessions.push_back(session);
}

// How long a lane waits before it tries again, when every place under max_connections is taken
// or the process is out of descriptors: trying at once would only fail again, in a loop that
// takes a CPU.
constexpr auto kAcceptRetry = std::chrono::milliseconds(50);
// At most one warning about accepting per lane in this long; the others are counted in the next.
constexpr auto kAcceptWarningEvery = std::chrono::seconds(10);

void Server::State::accept(Lane& lane) {
  if (stopping) return;
  lane.acceptor.async_accept(
      asio::make_strand(lane.io), [this, &lane](beast::error_code error, tcp::socket socket) {
        if (!error) {
          metrics.record_lane_connection(lane.index);
          return admit(lane, std::move(socket));
        }
        if (!lane.acceptor.is_open()) return;  // stop() closed it
        metrics.record_accept_error();
        bool out_of_resources = error == asio::error::no_descriptors ||
                                error == asio::error::no_buffer_space ||
                                error == asio::error::no_memory || error.value() == ENFILE;
        if (!out_of_resources) {
          warn_about_accepting(lane, "cannot accept a connection: " + error.message(),
                               "nothing to do unless it repeats: the client may have gone");
          return accept(lane);
        }
        warn_about_accepting(
            lane,
            "cannot accept a connection: " + error.message() + " (" +
                std::to_string(connection_cap.open()) + " connections open); trying again every " +
                std::to_string(kAcceptRetry.count()) + " ms",
            "lower --max-connections below the descriptor limit, or raise the limit "
            "(ulimit -n, LimitNOFILE=)");
        lane.accept_retry.expires_after(kAcceptRetry);
        lane.accept_retry.async_wait([this, &lane](beast::error_code error) {
          if (!error) accept(lane);
        });
      });
}

// A connection accepted gets a place under max_connections, or waits for one, unread, and the lane
// accepts no other meanwhile: the connections after it wait in the listen backlog.
void Server::State::admit(Lane& lane, tcp::socket socket) {
  if (stopping) return;
  auto place = connection_cap.reserve();
  if (!place) {
    if (!lane.at_cap) {
      lane.at_cap = true;
      metrics.record_connection_cap_wait();
      warn_about_accepting(
          lane,
          "corrald has " + std::to_string(connection_cap.max()) +
              " connections open, the most it may have (--max-connections): new connections "
              "wait until one closes",
          "if this is the normal load, raise --max-connections (and the descriptor limit, "
          "ulimit -n); if one client holds them, lower --max-connections-per-client");
    }
    lane.accept_retry.expires_after(kAcceptRetry);
    lane.accept_retry.async_wait(
        [this, &lane, socket = std::move(socket)](beast::error_code error) mutable {
          if (!error) admit(lane, std::move(socket));
        });
    return;
  }
  lane.at_cap = false;
  beast::error_code unknown;
  tcp::endpoint remote = socket.remote_endpoint(unknown);
  // A connection whose peer is already gone counts under no client; its first read fails.
  auto address =
      unknown ? std::nullopt : net::IpAddress::from_sockaddr(remote.data(), remote.size());
  std::string client = address ? sched::client_key(*address) : "";
  auto slot = connection_limit.admit(client);
  auto session = std::make_shared<Session>(std::move(socket), shared_from_this(), lane, remote,
                                           std::move(client), std::move(slot), std::move(*place));
  track(session);
  session->start();
  accept(lane);
}

void Server::State::warn_about_accepting(Lane& lane, const std::string& message,
                                         const std::string& hint) {
  auto now = Clock::now();
  if (lane.last_accept_warning != Clock::time_point{} &&
      now - lane.last_accept_warning < kAcceptWarningEvery) {
    ++lane.accept_warnings_suppressed;
    return;
  }
  nlohmann::json line = {{"time", iso8601_now()},
                         {"level", "warn"},
                         {"msg", message},
                         {"hint", hint},
                         {"lane", lane.index}};
  if (lane.accept_warnings_suppressed > 0) {
    line["warnings_not_logged_since_the_last"] = lane.accept_warnings_suppressed;
  }
  spdlog::warn(line.dump());
  lane.last_accept_warning = now;
  lane.accept_warnings_suppressed = 0;
}

namespace {

// The `index`-th segment of the target's path (0 is the one after the first '/'),
// percent-decoded and cut at kMaxQueueKeyBytes, or "" if the path has fewer segments.
std::string decoded_segment(std::string_view target, size_t index) {
  std::string_view path = target.substr(0, target.find('?'));
  if (path.starts_with('/')) path.remove_prefix(1);
  for (size_t i = 0; i < index; ++i) {
    size_t slash = path.find('/');
    if (slash == std::string_view::npos) return "";
    path.remove_prefix(slash + 1);
  }
  std::string_view segment = path.substr(0, path.find('/'));
  std::string key;
  for (size_t i = 0; i < segment.size() && key.size() < kMaxQueueKeyBytes; ++i) {
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    // A malformed escape is kept as sent: the API refuses the path anyway, and the key only has
    // to be stable for the same text.
    if (segment[i] == '%' && i + 2 < segment.size() && hex(segment[i + 1]) >= 0 &&
        hex(segment[i + 2]) >= 0) {
      key.push_back(static_cast<char>(hex(segment[i + 1]) * 16 + hex(segment[i + 2])));
      i += 2;
    } else {
      key.push_back(segment[i]);
    }
  }
  return key;
}

}  // namespace

std::string queue_key(std::string_view target) {
  if (!target.starts_with("/v1/tenants/")) return "";
  return decoded_segment(target, 2);
}

std::string script_key(std::string_view target) {
  if (!target.starts_with("/v1/tenants/") || decoded_segment(target, 3) != "scripts") return "";
  return decoded_segment(target, 4);
}

Server::Server(ServerOptions options, Api& api, metrics::Registry& metrics)
    : state_(std::make_shared<State>(std::move(options), api, metrics)) {
  const auto& where = state_->options;
  std::string address = where.host + ":" + std::to_string(where.port);
  beast::error_code error;
  auto ip = asio::ip::make_address(where.host, error);
  if (error) {
    throw std::runtime_error("cannot listen on " + address + ": \"" + where.host +
                             "\" is not an IP address; use a numeric address such as 127.0.0.1");
  }
  tcp::endpoint endpoint(ip, where.port);
  auto check = [&](const char* step) {
    if (error) {
      throw std::runtime_error("cannot listen on " + address + " (" + step +
                               "): " + error.message() +
                               "; pick another --listen address or stop what holds it");
    }
  };
  // Several lanes listen on the same port, each on a socket of its own (SO_REUSEPORT), and the
  // kernel spreads new connections over them. Only processes of corrald's own user can join,
  // but a second corrald started on the same port by mistake would join silently and take half
  // the connections: so a named port is first bound once without SO_REUSEPORT, which fails, as
  // it did before lanes, if anything listens there already.
  bool shared_port = state_->lanes.size() > 1;
  if (shared_port && endpoint.port() != 0) {
    tcp::acceptor probe(state_->lanes.front()->io);
    probe.open(endpoint.protocol(), error);
    check("open");
    probe.set_option(asio::socket_base::reuse_address(true), error);
    check("SO_REUSEADDR");
    probe.bind(endpoint, error);
    check("bind");
  }
  for (auto& lane : state_->lanes) {
    auto& acceptor = lane->acceptor;
    acceptor.open(endpoint.protocol(), error);
    check("open");
    acceptor.set_option(asio::socket_base::reuse_address(true), error);
    check("SO_REUSEADDR");
    if (shared_port) {
      acceptor.set_option(asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true),
                          error);
      check("SO_REUSEPORT");
    }
    acceptor.bind(endpoint, error);
    check("bind");
    acceptor.listen(asio::socket_base::max_listen_connections, error);
    check("listen");
    endpoint = acceptor.local_endpoint();  // the port the first lane got, for the others
  }
}

Server::~Server() {
  stop();
  state_->refusal_log.flush(Clock::now(), true);  // refusals of requests that came while stopping
  state_->metrics.watch_connections_open(nullptr);
  for (auto& lane : state_->lanes) lane->queue.shutdown();
}

std::string Server::local_address() const {
  auto endpoint = state_->lanes.front()->acceptor.local_endpoint();
  std::string host = endpoint.address().to_string();
  if (endpoint.address().is_v6()) host = "[" + host + "]";
  return host + ":" + std::to_string(endpoint.port());
}

void Server::run() {
  auto lanes = static_cast<unsigned>(state_->lanes.size());
  unsigned io_threads = Lane::share(std::max(1u, state_->options.io_threads), lanes);
  std::vector<std::thread> threads;
  for (auto& lane : state_->lanes) {
    asio::post(lane->acceptor.get_executor(),
               [state = state_, lane = lane.get()] { state->accept(*lane); });
    for (unsigned i = 0; i < io_threads; ++i) {
      threads.emplace_back([state = state_, lane = lane.get()] {
        Lane::name_and_pin_this_thread("http", lane->index, lane->cpu);
        lane->io.run();
      });
    }
  }
  for (auto& thread : threads) thread.join();
  for (auto& lane : state_->lanes) {
    lane->queue.shutdown();
    lane->flush_access_log();  // answers given on the way out
  }
}

void Server::State::arm_refusal_timer(Clock::time_point due) {
  std::lock_guard guard(refusal_timer_mutex);
  // Once stopping, no timer may keep the io_context running: stop() writes what is left.
  if (stopping || refusal_timer_armed) return;
  refusal_timer_armed = true;
  refusal_timer->expires_at(due);
  refusal_timer->async_wait([weak = weak_from_this()](beast::error_code error) {
    auto self = weak.lock();
    if (!self) return;
    {
      std::lock_guard guard(self->refusal_timer_mutex);
      self->refusal_timer_armed = false;
    }
    if (error) return;
    if (auto next = self->refusal_log.flush(Clock::now())) self->arm_refusal_timer(*next);
  });
}

void Server::stop() {
  // Once the acceptor is closed, run() may return and the Server be destroyed while this thread
  // (corrald's signal thread) is still here: hold the State, and touch nothing of `this` below.
  std::shared_ptr<State> state = state_;
  if (state->stopping.exchange(true)) return;
  {
    std::lock_guard guard(state->refusal_timer_mutex);
    state->refusal_timer->cancel();
  }
  state->refusal_log.flush(Clock::now(), true);
  for (auto& lane : state->lanes) {
    asio::post(lane->acceptor.get_executor(), [state, lane = lane.get()] {
      beast::error_code ignored;
      lane->acceptor.close(ignored);
      lane->accept_retry.cancel();
    });
  }
  std::lock_guard lock(state->sessions_mutex);
  for (auto& entry : state->sessions) {
    if (auto session = entry.lock()) session->close_if_idle();
  }
}

}  // namespace corral::api

// corrald's HTTP/1.1 transport (Boost.Beast on Asio). Requests are read and answered on a small
// pool of I/O threads; GET /healthz and GET /metrics are answered there, and every other request
// goes to Api::handle (api.h) on `invocation_threads` separate threads, since it may wait on the
// store or on a worker, so that a slow script never stalls the network side.
//
// Between the two sits a fair queue (sched/fair_queue.h) keyed by the tenant a path names
// (/v1/tenants/{tenant}/…, percent-decoded, at most kMaxQueueKeyBytes; "" for every other path):
// a tenant holds at most `tenant_queue_depth` queued requests, all together at most `max_queued`,
// and the invocation threads take turns across tenants by the run time each has used, so one
// tenant's flood cannot make the others wait behind it. A request over either bound is answered
// at once, from the I/O thread, with a 503 problem and Retry-After (docs/operations.md, "Fair
// queues and backpressure"). After a 429 or 503 with Retry-After, the same credentials sending the
// same request again (method, route, tenant, script), on any connection, wait until
// min(Retry-After, refusal_hold_ms) has passed before it is handled ("The refusal hold"), one
// client (an IPv4 address, an IPv6 /64) may have at most max_connections_per_client connections
// open ("Connections per client"), and the server at most max_connections in all ("Connections in
// all"): past that, a lane holds the connection it accepted, unread, and accepts no other until
// one closes, so the rest wait in the listen backlog.
//
// With several CPU lanes (ServerOptions::lanes), all of the above exists once per lane: a
// listening socket on the shared port, I/O threads, a fair queue and its invocation threads, all
// pinned to the lane's CPU, so that a request never waits for a wake-up on another CPU
// (docs/operations.md, "CPU lanes").
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "api/api.h"
#include "metrics/metrics.h"

namespace corral::api {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;  // 0 picks a free port; local_address() tells which
  unsigned io_threads = 1;
  unsigned invocation_threads = 4;
  // CPU lanes (cpu_lane.h). With more than one, the server is split into that many lanes, lane i
  // pinned to the i-th CPU corrald may use (wrapping around): each has its own listening socket
  // on the shared port, its share of io_threads and invocation_threads (at least one of each),
  // and its own fair queue, with per-tenant depth tenant_queue_depth and its share of
  // max_queued. 1: a single lane, nothing pinned.
  unsigned lanes = 1;
  size_t tenant_queue_depth = 64;  // requests queued per tenant, waiting for a thread
  size_t max_queued = 1024;        // requests queued in all
  size_t max_body_bytes = 1 << 20;
  int64_t idle_timeout_ms = 30'000;  // a keep-alive connection with no request is closed
  // After a 429 or 503 with Retry-After, the same request again (credentials, method, route,
  // tenant, script), on any connection, is handled only once min(Retry-After, this) has passed;
  // 0: at once.
  int64_t refusal_hold_ms = 1000;
  // Connections one client (sched::client_key: an IPv4 address, an IPv6 /64) may have open at
  // once; more are answered with a 429 too-many-connections and closed. 0: no limit.
  size_t max_connections_per_client = 256;
  // Connections served at once in all; past that many, new ones wait until one closes, so
  // connections cannot take the descriptors the workers and the store need. 0: no cap.
  size_t max_connections = 0;
  // Denials a client can repeat at will (Response::paced_per_client: 401s, probes of other
  // tenants, role refusals) answered at once per minute per client; past it, each waits until the
  // budget allows, at most refusal_hold_ms (0: never), so that a flood of them is paced.
  int64_t denials_per_client_per_minute = 120;
  // Reported by GET /healthz: which defence layers this server runs with.
  nlohmann::json layers = nlohmann::json::array();
};

// Tenant names are at most 64 characters; a longer segment is cut, so a client cannot make the
// queue keep long keys.
inline constexpr size_t kMaxQueueKeyBytes = 64;

// The fair queue key of a request target: its {tenant} segment, or "" if it names none.
std::string queue_key(std::string_view target);

// The {script} segment of a /v1/tenants/{tenant}/scripts/{script}… target, percent-decoded and
// cut as queue_key, or "" if it names none: with the tenant, what a refusal hold is kept for.
std::string script_key(std::string_view target);

class Server {
 public:
  // Binds and listens at once (so the port is known and connections queue); serves from run().
  // Throws std::runtime_error saying which address could not be bound and why.
  Server(ServerOptions options, Api& api, metrics::Registry& metrics);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // "host:port" actually bound.
  std::string local_address() const;

  // Serves until stop(); returns once every accepted request has been answered.
  void run();

  // Graceful: stop accepting, close idle connections, let requests in progress (and their
  // invocations) finish and be answered with "Connection: close". Safe from any thread.
  void stop();

  struct State;  // opaque: the listener, sessions and pools live in server.cc

 private:
  std::shared_ptr<State> state_;
};

}  // namespace corral::api

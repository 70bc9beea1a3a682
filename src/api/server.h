// corrald's HTTP/1.1 API (Boost.Beast on Asio): POST /v1/run, GET /healthz, GET /metrics.
// Requests are read and answered on a small pool of I/O threads; invocations, which block on a
// worker, run on a separate bounded pool so that a slow script never stalls the network side.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "invocation/executor.h"
#include "invocation/invocation.h"
#include "metrics/metrics.h"

namespace corral::api {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;  // 0 picks a free port; local_address() tells which
  unsigned io_threads = 1;
  unsigned invocation_threads = 4;
  size_t max_body_bytes = 1 << 20;
  int64_t idle_timeout_ms = 30'000;  // a keep-alive connection with no request is closed
  LimitsPolicy limits;
  // Reported by GET /healthz: which defence layers this server runs with.
  nlohmann::json layers = nlohmann::json::array();
};

class Server {
 public:
  // Binds and listens at once (so the port is known and connections queue); serves from run().
  // Throws std::runtime_error saying which address could not be bound and why.
  Server(ServerOptions options, Executor& executor, metrics::Registry& metrics);
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

// corrald's HTTP/1.1 transport (Boost.Beast on Asio). Requests are read and answered on a small
// pool of I/O threads; GET /healthz and GET /metrics are answered there, and every other request
// goes to Api::handle (api.h) on a separate bounded pool, since it may wait on the store or on a
// worker, so that a slow script never stalls the network side.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "api/api.h"
#include "metrics/metrics.h"

namespace corral::api {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;  // 0 picks a free port; local_address() tells which
  unsigned io_threads = 1;
  unsigned invocation_threads = 4;
  size_t max_body_bytes = 1 << 20;
  int64_t idle_timeout_ms = 30'000;  // a keep-alive connection with no request is closed
  // Reported by GET /healthz: which defence layers this server runs with.
  nlohmann::json layers = nlohmann::json::array();
};

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

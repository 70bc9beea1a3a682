// A real corrald started on a free loopback port for one test, and a small HTTP/1.1 client
// (Boost.Beast, synchronous) to speak to it.
//
// Only declarations and the light Beast headers for the types they name: the bodies, which need
// all of Asio and Beast's read/write, are compiled once in corrald_process.cc (library
// corral_test_support). A test that writes on HttpClient::socket() itself includes
// <boost/beast/http/write.hpp>.
#pragma once

#include <sys/types.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace corral::testing {

namespace fs = std::filesystem;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

std::string read_text(const fs::path& path);

class HttpClient;

class CorraldProcess {
 public:
  // With no directory, a fresh one is made and removed afterwards; with one (to restart a corrald
  // on the same data), it is kept.
  explicit CorraldProcess(std::vector<std::string> extra_arguments = {}, fs::path directory = {});
  ~CorraldProcess();

  // SIGTERM, then the exit status (or -signal) once it has exited.
  int terminate_and_wait();

  int wait();

  pid_t pid() const { return pid_; }
  const std::string& host() const { return host_; }
  uint16_t port() const { return port_; }
  fs::path log_path() const { return dir_ / "log"; }
  fs::path data_dir() const { return dir_ / "data"; }
  const fs::path& directory() const { return dir_; }

  // The admin token corrald wrote on its first start.
  std::string admin_token() const;

  // A connection that sends the admin token.
  HttpClient client() const;

  // A series from GET /metrics, named as rendered ("corral_jobs_pruned_total",
  // "corral_jobs{state=\"queued\"}"), or -1 if corrald does not show it. Read over a connection
  // from `source_address` if given (HttpClient).
  double metric(const std::string& series, const std::string& source_address = {}) const;

  // Every whole JSON line corrald has logged so far (not one it is still writing).
  std::vector<nlohmann::json> log_lines() const;

  // The log once it has stopped growing for 50 ms (at most a few seconds): for a test that looks
  // for what must not be in it, every request's line included.
  std::vector<nlohmann::json> log_lines_settled() const;

  // The log once it holds `count` access-log lines (msg "request"), or as it is after a few
  // seconds: corrald writes a request's line just after its answer, not before.
  std::vector<nlohmann::json> log_lines_with_requests(size_t count) const;

 private:
  fs::path dir_;
  bool owns_dir_ = true;
  pid_t pid_ = -1;
  std::string host_;
  uint16_t port_ = 0;
};

// One keep-alive connection.
class HttpClient {
 public:
  // `token`, if given, is sent as "Authorization: Bearer <token>" with every request.
  // `source_address`, if given, is the local address the connection is made from (another
  // loopback address, 127.0.0.2, to stand for another client).
  HttpClient(const std::string& host, uint16_t port, std::string token = {},
             const std::string& source_address = {});
  HttpClient(HttpClient&&) noexcept;
  HttpClient& operator=(HttpClient&&) noexcept;
  ~HttpClient();

  std::string token;

  // `headers` are sent as well (Idempotency-Key, for instance).
  http::response<http::string_body> request(
      http::verb method, const std::string& target, const std::string& body = "",
      const std::string& content_type = "application/json",
      const std::vector<std::pair<std::string, std::string>>& headers = {});

  http::response<http::string_body> post_json(const nlohmann::json& body) {
    return request(http::verb::post, "/v1/run", body.dump());
  }

  http::response<http::string_body> read_response();

  tcp::socket& socket();

 private:
  // The io_context, socket and read buffer, behind a pointer so that only corrald_process.cc
  // needs their definitions.
  struct Connection;
  std::unique_ptr<Connection> connection_;
};

}  // namespace corral::testing

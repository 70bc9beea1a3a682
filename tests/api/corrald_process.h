// A real corrald started on a free loopback port for one test, and a small HTTP/1.1 client
// (Boost.Beast, synchronous) to speak to it.
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "jail/jail.h"

namespace corral::testing {

namespace fs = std::filesystem;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

inline std::string read_text(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

class HttpClient;

class CorraldProcess {
 public:
  // With no directory, a fresh one is made and removed afterwards; with one (to restart a corrald
  // on the same data), it is kept.
  explicit CorraldProcess(std::vector<std::string> extra_arguments = {}, fs::path directory = {}) {
    owns_dir_ = directory.empty();
    dir_ = owns_dir_ ? fs::temp_directory_path() / ("corrald-test-" + std::to_string(getpid()) +
                                                    "-" + std::to_string(counter()++))
                     : directory;
    if (owns_dir_) fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::remove(dir_ / "ready");
    std::vector<std::string> arguments = {CORRALD_PATH,
                                          "--listen",
                                          "127.0.0.1:0",
                                          "--ready-file",
                                          (dir_ / "ready").string(),
                                          "--data-dir",
                                          (dir_ / "data").string()};
    // A layer this machine cannot provide is accepted here so that the API tests run anywhere;
    // tests/jail and the refusal test below cover the layers themselves.
    for (const auto& status : corral::jail::probe_machine()) {
      if (!status.available)
        arguments.push_back("--allow-missing-layer=" +
                            std::string(corral::jail::to_string(status.layer)));
    }
    bool names_a_worker = std::find(extra_arguments.begin(), extra_arguments.end(), "--worker") !=
                          extra_arguments.end();
    if (!names_a_worker) arguments.insert(arguments.end(), {"--worker", CORRAL_WORKER_PATH});
    arguments.insert(arguments.end(), extra_arguments.begin(), extra_arguments.end());
    std::vector<char*> argv;
    for (auto& argument : arguments) argv.push_back(argument.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_addopen(&actions, 2, (dir_ / "stderr").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int failed = posix_spawn(&pid_, CORRALD_PATH, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (failed) throw std::runtime_error("cannot start corrald: " + std::string(strerror(failed)));

    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!fs::exists(dir_ / "ready")) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("corrald exited before listening: " + read_text(log_path()) +
                                 read_text(dir_ / "stderr"));
      }
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("corrald did not become ready");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::string address = read_text(dir_ / "ready");
    auto colon = address.rfind(':');
    host_ = address.substr(0, colon);
    port_ = static_cast<uint16_t>(std::stoi(address.substr(colon + 1)));
  }

  ~CorraldProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (owns_dir_) fs::remove_all(dir_);
  }

  // SIGTERM, then the exit status (or -signal) once it has exited.
  int terminate_and_wait() {
    kill(pid_, SIGTERM);
    return wait();
  }

  int wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }

  pid_t pid() const { return pid_; }
  const std::string& host() const { return host_; }
  uint16_t port() const { return port_; }
  fs::path log_path() const { return dir_ / "log"; }
  fs::path data_dir() const { return dir_ / "data"; }
  const fs::path& directory() const { return dir_; }

  // The admin token corrald wrote on its first start.
  std::string admin_token() const {
    std::string token = read_text(data_dir() / "admin.token");
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
    return token;
  }

  // A connection that sends the admin token.
  HttpClient client() const;

  // A series from GET /metrics, named as rendered ("corral_jobs_pruned_total",
  // "corral_jobs{state=\"queued\"}"), or -1 if corrald does not show it.
  double metric(const std::string& series) const;

  // Every JSON line corrald has logged so far.
  std::vector<nlohmann::json> log_lines() const {
    std::vector<nlohmann::json> lines;
    std::istringstream text(read_text(log_path()));
    for (std::string line; std::getline(text, line);) lines.push_back(nlohmann::json::parse(line));
    return lines;
  }

  // The log once it has stopped growing for 50 ms (at most a few seconds): for a test that looks
  // for what must not be in it, every request's line included.
  std::vector<nlohmann::json> log_lines_settled() const {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    std::string before = read_text(log_path());
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      std::string now = read_text(log_path());
      if (now == before || std::chrono::steady_clock::now() > deadline) return log_lines();
      before = std::move(now);
    }
  }

  // The log once it holds `count` access-log lines (msg "request"), or as it is after a few
  // seconds: corrald writes a request's line just after its answer, not before.
  std::vector<nlohmann::json> log_lines_with_requests(size_t count) const {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      auto lines = log_lines();
      size_t requests = 0;
      for (const auto& line : lines) requests += line.value("msg", "") == "request";
      if (requests >= count || std::chrono::steady_clock::now() > deadline) return lines;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

 private:
  static int& counter() {
    static int value = 0;
    return value;
  }

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
  HttpClient(const std::string& host, uint16_t port, std::string token = {})
      : token(std::move(token)), socket_(io_) {
    socket_.connect(tcp::endpoint(boost::asio::ip::make_address(host), port));
  }

  std::string token;

  // `headers` are sent as well (Idempotency-Key, for instance).
  http::response<http::string_body> request(
      http::verb method, const std::string& target, const std::string& body = "",
      const std::string& content_type = "application/json",
      const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    http::request<http::string_body> message(method, target, 11);
    message.set(http::field::host, "127.0.0.1");
    if (!token.empty()) message.set(http::field::authorization, "Bearer " + token);
    for (const auto& [name, value] : headers) message.set(name, value);
    if (!body.empty() || method == http::verb::post) {
      message.set(http::field::content_type, content_type);
      message.body() = body;
    }
    message.prepare_payload();
    http::write(socket_, message);
    return read_response();
  }

  http::response<http::string_body> post_json(const nlohmann::json& body) {
    return request(http::verb::post, "/v1/run", body.dump());
  }

  http::response<http::string_body> read_response() {
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    http::read(socket_, buffer_, parser);
    return parser.release();
  }

  tcp::socket& socket() { return socket_; }

 private:
  boost::asio::io_context io_;
  tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
};

inline HttpClient CorraldProcess::client() const { return HttpClient(host_, port_, admin_token()); }

inline double CorraldProcess::metric(const std::string& series) const {
  std::istringstream lines(HttpClient(host_, port_).request(http::verb::get, "/metrics").body());
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

}  // namespace corral::testing

#include "api/corrald_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "jail/jail.h"

namespace corral::testing {

namespace {

int& counter() {
  static int value = 0;
  return value;
}

}  // namespace

std::string read_text(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

CorraldProcess::CorraldProcess(std::vector<std::string> extra_arguments, fs::path directory) {
  owns_dir_ = directory.empty();
  dir_ = owns_dir_ ? fs::temp_directory_path() / ("corrald-test-" + std::to_string(getpid()) + "-" +
                                                  std::to_string(counter()++))
                   : directory;
  if (owns_dir_) fs::remove_all(dir_);
  fs::create_directories(dir_);
  fs::remove(dir_ / "ready");
  // A benchmark may measure another build's corrald, with that build's worker beside it, the same
  // way (bench/audit_flood.cc).
  const char* other = std::getenv("CORRAL_BENCH_CORRALD");
  const std::string program = other && *other ? other : CORRALD_PATH;
  const std::string worker = other && *other
                                 ? (fs::path(other).parent_path() / "corral-worker").string()
                                 : std::string(CORRAL_WORKER_PATH);
  std::vector<std::string> arguments = {program,
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
  if (!names_a_worker) arguments.insert(arguments.end(), {"--worker", worker});
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
  int failed = posix_spawn(&pid_, program.c_str(), &actions, nullptr, argv.data(), environ);
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

CorraldProcess::~CorraldProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (owns_dir_) fs::remove_all(dir_);
}

int CorraldProcess::terminate_and_wait() {
  kill(pid_, SIGTERM);
  return wait();
}

int CorraldProcess::wait() {
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

std::string CorraldProcess::admin_token() const {
  std::string token = read_text(data_dir() / "admin.token");
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  return token;
}

HttpClient CorraldProcess::client() const { return HttpClient(host_, port_, admin_token()); }

double CorraldProcess::metric(const std::string& series, const std::string& source_address) const {
  std::istringstream lines(
      HttpClient(host_, port_, "", source_address).request(http::verb::get, "/metrics").body());
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

std::vector<nlohmann::json> CorraldProcess::log_lines() const {
  std::vector<nlohmann::json> lines;
  std::string text = read_text(log_path());
  // A line corrald is still writing has no line break yet: it is read the next time, whole (a
  // slow writer, as under the sanitizers, is caught half-way more often).
  text.erase(text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1);
  std::istringstream complete(text);
  for (std::string line; std::getline(complete, line);)
    lines.push_back(nlohmann::json::parse(line));
  return lines;
}

std::vector<nlohmann::json> CorraldProcess::log_lines_settled() const {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::string before = read_text(log_path());
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::string now = read_text(log_path());
    if (now == before || std::chrono::steady_clock::now() > deadline) return log_lines();
    before = std::move(now);
  }
}

std::vector<nlohmann::json> CorraldProcess::log_lines_with_requests(size_t count) const {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    auto lines = log_lines();
    size_t requests = 0;
    for (const auto& line : lines) requests += line.value("msg", "") == "request";
    if (requests >= count || std::chrono::steady_clock::now() > deadline) return lines;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

struct HttpClient::Connection {
  boost::asio::io_context io;
  tcp::socket socket{io};
  boost::beast::flat_buffer buffer;
};

HttpClient::HttpClient(const std::string& host, uint16_t port, std::string token,
                       const std::string& source_address)
    : token(std::move(token)), connection_(std::make_unique<Connection>()) {
  tcp::endpoint server(boost::asio::ip::make_address(host), port);
  if (!source_address.empty()) {
    connection_->socket.open(server.protocol());
    connection_->socket.bind(tcp::endpoint(boost::asio::ip::make_address(source_address), 0));
  }
  connection_->socket.connect(server);
}

HttpClient::HttpClient(HttpClient&&) noexcept = default;
HttpClient& HttpClient::operator=(HttpClient&&) noexcept = default;
HttpClient::~HttpClient() = default;

http::response<http::string_body> HttpClient::request(
    http::verb method, const std::string& target, const std::string& body,
    const std::string& content_type,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  http::request<http::string_body> message(method, target, 11);
  message.set(http::field::host, "127.0.0.1");
  if (!token.empty()) message.set(http::field::authorization, "Bearer " + token);
  for (const auto& [name, value] : headers) message.set(name, value);
  if (!body.empty() || method == http::verb::post) {
    message.set(http::field::content_type, content_type);
    message.body() = body;
  }
  message.prepare_payload();
  http::write(connection_->socket, message);
  return read_response();
}

http::response<http::string_body> HttpClient::read_response() {
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  http::read(connection_->socket, connection_->buffer, parser);
  return parser.release();
}

tcp::socket& HttpClient::socket() { return connection_->socket; }

}  // namespace corral::testing

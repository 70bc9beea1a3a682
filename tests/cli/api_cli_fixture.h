// The corral CLI run as a person runs it, against a real corrald: a fixture shared by the CLI
// test files. `corral(...)` runs the binary with exactly the given arguments and environment;
// ApiCliWithCorrald starts a corrald and `as(token, ...)` runs a command with that token.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "api/corrald_process.h"

namespace corral::testing::cli {

namespace fs = std::filesystem;
using corral::testing::CorraldProcess;

struct CliRun {
  int status = -1;
  std::string out;
  std::string err;
};

inline std::ostream& operator<<(std::ostream& stream, const CliRun& run) {
  return stream << "exit " << run.status << "\n--- stdout\n"
                << run.out << "--- stderr\n"
                << run.err;
}

inline bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class ApiCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("corral-api-cli-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    auto path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }

  // Runs corral with exactly these arguments and environment: the test's own CORRAL_* and proxy
  // variables are dropped so that only `env` speaks.
  CliRun corral(const std::vector<std::string>& arguments,
                const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> argv_text = {CORRAL_CLI_PATH};
    argv_text.insert(argv_text.end(), arguments.begin(), arguments.end());
    std::vector<std::string> env_text;
    for (char** entry = environ; *entry; ++entry) {
      std::string line(*entry);
      std::string name = line.substr(0, line.find('='));
      std::string lower = name;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (name.starts_with("CORRAL_") || lower.ends_with("_proxy")) continue;
      env_text.push_back(line);
    }
    for (const auto& [name, value] : env) env_text.push_back(name + "=" + value);
    std::vector<char*> argv, envp;
    for (auto& text : argv_text) argv.push_back(text.data());
    argv.push_back(nullptr);
    for (auto& text : env_text) envp.push_back(text.data());
    envp.push_back(nullptr);

    fs::path out = dir_ / "stdout", err = dir_ / "stderr";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid = -1;
    int failed = posix_spawn(&pid, CORRAL_CLI_PATH, &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (failed) throw std::runtime_error("cannot start corral: " + std::string(strerror(failed)));
    int status = 0;
    waitpid(pid, &status, 0);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
            corral::testing::read_text(out), corral::testing::read_text(err)};
  }

  fs::path dir_;
};

// A corrald and the CLI pointed at it: `as(token, …)` runs a command with that token.
class ApiCliWithCorrald : public ApiCliTest {
 protected:
  void SetUp() override {
    ApiCliTest::SetUp();
    corrald_ = std::make_unique<CorraldProcess>();
    server_ = "http://" + corrald_->host() + ":" + std::to_string(corrald_->port());
    admin_ = corrald_->admin_token();
  }
  void TearDown() override {
    corrald_.reset();
    ApiCliTest::TearDown();
  }

  CliRun as(const std::string& token, std::vector<std::string> arguments) {
    std::vector<std::string> all = {"--server", server_, "--token", token};
    all.insert(all.end(), arguments.begin(), arguments.end());
    return corral(all);
  }

  // A new token's secret, as `token create` prints it: alone on stdout.
  std::string make_token(const std::string& tenant, const std::string& role,
                         const std::string& subject) {
    CliRun made =
        as(admin_, {"token", "create", "--tenant", tenant, "--role", role, "--subject", subject});
    EXPECT_EQ(made.status, 0) << made;
    EXPECT_TRUE(std::regex_match(made.out, std::regex("corral_[0-9a-f]{64}\n"))) << made;
    EXPECT_TRUE(has(made.err, "role " + role)) << made;
    return made.out.substr(0, made.out.size() - 1);
  }

  // tenant → publisher, reviewer; `script` published from `source`, approved, and live.
  std::pair<std::string, std::string> live_script(const std::string& tenant,
                                                  const std::string& script,
                                                  const std::string& source) {
    CliRun created = as(admin_, {"tenant", "create", tenant});
    EXPECT_EQ(created.status, 0) << created;
    std::string publisher = make_token(tenant, "publisher", tenant + "-publisher");
    std::string reviewer = make_token(tenant, "reviewer", tenant + "-reviewer");
    auto file = write(script + ".lua", source);
    CliRun published = as(publisher, {"publish", file, "--tenant", tenant, "--script", script});
    EXPECT_EQ(published.status, 0) << published;
    CliRun approved = as(reviewer, {"approve", "--tenant", tenant, "--script", script, "1"});
    EXPECT_EQ(approved.status, 0) << approved;
    CliRun aliased =
        as(reviewer, {"alias", "set", "--tenant", tenant, "--script", script, "live", "1"});
    EXPECT_EQ(aliased.status, 0) << aliased;
    return {publisher, reviewer};
  }

  std::unique_ptr<CorraldProcess> corrald_;
  std::string server_;
  std::string admin_;
};

// A port nothing listens on, for as long as the object lives: bound but never listened on, so
// that connecting is refused. Kept bound rather than closed at once, so that no other process
// (ctest runs tests in parallel, and each corrald takes an ephemeral port) can listen on it
// meanwhile.
class ClosedPort {
 public:
  ClosedPort() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address);
    socklen_t length = sizeof address;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
  }
  ~ClosedPort() { close(fd_); }
  ClosedPort(const ClosedPort&) = delete;
  ClosedPort& operator=(const ClosedPort&) = delete;
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// The table's data row whose first cell is `key`, split on runs of spaces.
inline std::vector<std::string> row(const std::string& table, const std::string& key) {
  std::istringstream lines(table);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream cells(line);
    std::vector<std::string> split;
    for (std::string cell; cells >> cell;) split.push_back(cell);
    if (!split.empty() && split[0] == key) return split;
  }
  return {};
}

}  // namespace corral::testing::cli

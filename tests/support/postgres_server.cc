#include "support/postgres_server.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <vector>

namespace corral::testing {

namespace fs = std::filesystem;

namespace {

// The newest installed server's programs: /usr/lib/postgresql/<major>/bin.
std::optional<fs::path> server_bin() {
  std::vector<fs::path> found;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", error)) {
    if (fs::exists(entry.path() / "bin" / "pg_ctl")) found.push_back(entry.path() / "bin");
  }
  if (found.empty()) return std::nullopt;
  std::sort(found.begin(), found.end(), [](const fs::path& a, const fs::path& b) {
    return std::stoi(a.parent_path().filename()) < std::stoi(b.parent_path().filename());
  });
  return found.back();
}

std::string shell_quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// The command's exit status and what it printed on stdout and stderr. The command gets no other
// descriptor of this process: the server it starts outlives the call, and must not keep a test's
// sockets, pipes or lock files open.
std::pair<int, std::string> shell(const std::string& command) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return {-1, "pipe failed"};
  pid_t child = fork();
  if (child < 0) return {-1, "fork failed"};
  if (child == 0) {
    dup2(out[1], 1);
    dup2(out[1], 2);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, 0);
    close_range(3, ~0U, 0);
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  std::string output;
  std::array<char, 4096> buffer;
  for (;;) {
    ssize_t n = read(out[0], buffer.data(), buffer.size());
    if (n > 0) {
      output.append(buffer.data(), static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(out[0]);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return {status, output};
}

}  // namespace

std::optional<std::string> PostgresServer::unavailable() {
  if (!server_bin()) {
    return "no PostgreSQL server is installed (Debian's postgresql package; "
           "scripts/install-deps.sh installs it)";
  }
  if (geteuid() == 0 && getpwnam("postgres") == nullptr) {
    return "the tests run as root, and there is no postgres user to run PostgreSQL as";
  }
  return std::nullopt;
}

PostgresServer::PostgresServer(bool durable) : durable_(durable) {
  if (auto why = unavailable()) throw std::runtime_error(*why);
  bin_ = *server_bin();
  std::string pattern = (fs::temp_directory_path() / "corral-pg-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("cannot make a directory for PostgreSQL in " +
                             fs::temp_directory_path().string());
  }
  directory_ = pattern;
  make_and_start();
}

PostgresServer::PostgresServer(const fs::path& directory) : directory_(directory), owned_(false) {
  if (auto why = unavailable()) throw std::runtime_error(*why);
  bin_ = *server_bin();
  if (geteuid() == 0) run_as_ = "postgres";
  running_ = true;
}

void PostgresServer::start_in(const fs::path& directory) {
  if (auto why = unavailable()) throw std::runtime_error(*why);
  fs::create_directories(directory.parent_path());
  if (!fs::create_directory(directory)) {
    throw std::runtime_error(directory.string() + " exists already: stop the server there first");
  }
  PostgresServer server(directory);
  server.running_ = false;
  server.make_and_start();
}

void PostgresServer::stop_in(const fs::path& directory) {
  {
    PostgresServer server(directory);
    server.owned_ = true;  // stopped and removed when it goes
  }
}

void PostgresServer::make_and_start() {
  if (geteuid() == 0) {
    run_as_ = "postgres";
    passwd* user = getpwnam("postgres");
    if (chown(directory_.c_str(), user->pw_uid, user->pw_gid) != 0) {
      throw std::runtime_error("cannot give " + directory_.string() + " to the postgres user");
    }
  }
  run("initdb", "--pgdata=" + shell_quoted((directory_ / "data").string()) +
                    " --username=corral --auth=trust --encoding=UTF8 --locale=C.UTF-8 --no-sync");
  start();
}

PostgresServer::~PostgresServer() {
  if (!owned_) return;
  try {
    if (running_) stop();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "PostgresServer: %s\n", error.what());
  }
  std::error_code ignored;
  fs::remove_all(directory_, ignored);
}

void PostgresServer::run(const std::string& program, const std::string& arguments) const {
  std::string command = shell_quoted((bin_ / program).string()) + " " + arguments;
  if (!run_as_.empty()) command = "runuser -u " + run_as_ + " -- " + command;
  auto [status, output] = shell(command);
  if (status != 0) {
    throw std::runtime_error(program + " failed (status " + std::to_string(status) +
                             "): " + output);
  }
}

void PostgresServer::start() {
  // No TCP at all (listen_addresses empty): the socket in the test's directory is the only way
  // in, so no other process on the machine can reach this server by accident.
  std::string options = "-c listen_addresses='' -k " + directory_.string();
  if (!durable_) options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off";
  run("pg_ctl", "start --wait --timeout=60 --silent --pgdata=" +
                    shell_quoted((directory_ / "data").string()) +
                    " --log=" + shell_quoted((directory_ / "server.log").string()) + " -o " +
                    shell_quoted(options));
  running_ = true;
}

void PostgresServer::stop() {
  run("pg_ctl", "stop --wait --timeout=60 --silent --mode=fast --pgdata=" +
                    shell_quoted((directory_ / "data").string()));
  running_ = false;
}

std::string PostgresServer::url(const std::string& database) const {
  return "postgresql://corral@/" + database + "?host=" + directory_.string();
}

void PostgresServer::create_database(const std::string& name) {
  run("psql", "--quiet --no-psqlrc --set=ON_ERROR_STOP=1 " + shell_quoted(url()) +
                  " --command=" + shell_quoted("CREATE DATABASE " + name));
}

}  // namespace corral::testing

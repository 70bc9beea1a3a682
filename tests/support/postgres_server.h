// A PostgreSQL server of a test's own: Debian's `postgresql` binaries, a cluster made by initdb in
// a temporary directory, listening on a unix socket in that directory only (no TCP port), with
// fsync off since nothing it holds outlives the test. Stopped and removed when destroyed.
//
// PostgreSQL refuses to run as root; when the tests do, the server runs as the `postgres` user
// that Debian's package creates, and its directory is handed to that user.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>

namespace corral::testing {

class PostgresServer {
 public:
  // Why no server can be started here (no binaries, no user to run as), or nullopt.
  static std::optional<std::string> unavailable();

  // initdb and start; throws std::runtime_error with the tools' output when either fails.
  // `durable`: fsync and synchronous commits on, as a production server has them (for benches;
  // tests leave them off).
  explicit PostgresServer(bool durable = false);
  // The server already running in `directory` (made by start_in): used, and left running.
  explicit PostgresServer(const std::filesystem::path& directory);
  ~PostgresServer();

  // A server that outlives this process (ctest's fixture for a whole run): made and started in
  // `directory`, which must not exist yet; and stopped, with the directory removed.
  static void start_in(const std::filesystem::path& directory);
  static void stop_in(const std::filesystem::path& directory);
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // A postgresql:// URI for a database on this server (created by create_database, or
  // "postgres", which initdb makes).
  std::string url(const std::string& database = "postgres") const;
  // A new empty database; its name must be a plain identifier.
  void create_database(const std::string& name);

  // Stops the server (fast shutdown: clients are disconnected), and starts it again.
  void stop();
  void start();
  bool running() const { return running_; }

  const std::filesystem::path& directory() const { return directory_; }

 private:
  // Runs a PostgreSQL program as the server's user; throws with its output if it fails.
  void run(const std::string& program, const std::string& arguments) const;

  std::filesystem::path bin_;
  std::filesystem::path directory_;
  // Makes the cluster in directory_ (which exists) and starts it.
  void make_and_start();

  std::string run_as_;  // "" when the tests are not root
  bool running_ = false;
  bool owned_ = true;  // stopped and removed with this object
  bool durable_ = false;
};

}  // namespace corral::testing

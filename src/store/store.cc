#include "store/store.h"

#include <sys/random.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "store/postgres_connection.h"
#include "store/postgres_sql.h"
#include "store/sqlite_store.h"

namespace corral::store {

std::string new_id() {
  unsigned char bytes[16];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0 && errno != EINTR) {
      throw StoreError(std::string("cannot draw a random id from the kernel: ") +
                       std::strerror(errno));
    }
    if (n > 0) got += static_cast<size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (unsigned char byte : bytes) {
    id += kHex[byte >> 4];
    id += kHex[byte & 0xf];
  }
  return id;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string iso8601(int64_t ms) {
  std::time_t seconds = ms / 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[64];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<int>(ms % 1000));
  return text;
}

std::string_view to_string(VersionState state) {
  switch (state) {
    case VersionState::pending:
      return "pending";
    case VersionState::approved:
      return "approved";
    case VersionState::deprecated:
      return "deprecated";
    case VersionState::disabled:
      return "disabled";
  }
  return "unknown";
}

std::optional<VersionState> parse_version_state(std::string_view text) {
  for (auto state : {VersionState::pending, VersionState::approved, VersionState::deprecated,
                     VersionState::disabled}) {
    if (text == to_string(state)) return state;
  }
  return std::nullopt;
}

// ---- jobs

std::string_view to_string(JobState state) {
  switch (state) {
    case JobState::queued:
      return "queued";
    case JobState::running:
      return "running";
    case JobState::succeeded:
      return "succeeded";
    case JobState::failed:
      return "failed";
    case JobState::cancelled:
      return "cancelled";
  }
  return "unknown";
}

std::optional<JobState> parse_job_state(std::string_view text) {
  for (auto state : {JobState::queued, JobState::running, JobState::succeeded, JobState::failed,
                     JobState::cancelled}) {
    if (text == to_string(state)) return state;
  }
  return std::nullopt;
}

std::string_view to_string(DeliveryState state) {
  switch (state) {
    case DeliveryState::pending:
      return "pending";
    case DeliveryState::delivered:
      return "delivered";
    case DeliveryState::dead:
      return "dead";
  }
  return "unknown";
}

std::optional<DeliveryState> parse_delivery_state(std::string_view text) {
  for (auto state : {DeliveryState::pending, DeliveryState::delivered, DeliveryState::dead}) {
    if (text == to_string(state)) return state;
  }
  return std::nullopt;
}

std::unique_ptr<Store> open_sqlite_store(const std::filesystem::path& data_dir) {
  std::error_code error;
  if (!std::filesystem::exists(data_dir, error)) {
    if (!std::filesystem::create_directories(data_dir, error) && error) {
      throw StoreError("cannot create the data directory " + data_dir.string() + ": " +
                       error.message() + "; create it yourself or choose another --data-dir");
    }
    // The database holds tenants' sources and token hashes: other local users have no business
    // reading it.
    std::filesystem::permissions(data_dir, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::replace, error);
    if (error) {
      throw StoreError("cannot restrict the new data directory " + data_dir.string() +
                       " to its owner: " + error.message() +
                       "; create it yourself with mode 0700 and start again");
    }
  }
  return std::make_unique<SqliteStore>(data_dir / "corral.db");
}

std::unique_ptr<Store> open_postgres_store(const std::string& url) {
  return std::make_unique<SqliteStore>(std::make_unique<PostgresSqlConnection>(url));
}

std::unique_ptr<Store> open_store_at(std::string_view location,
                                     const std::filesystem::path& data_dir) {
  if (location.empty()) return open_sqlite_store(data_dir);
  if (location.starts_with("sqlite:")) {
    std::filesystem::path file(location.substr(std::string_view("sqlite:").size()));
    if (file.empty()) {
      throw std::invalid_argument("--store sqlite: names no file; write sqlite:PATH");
    }
    return std::make_unique<SqliteStore>(file);
  }
  if (location.starts_with("postgresql://") || location.starts_with("postgres://")) {
    return open_postgres_store(std::string(location));
  }
  throw std::invalid_argument("--store must be sqlite:PATH or a postgresql:// URI, not \"" +
                              redact_store_url(location) + "\"");
}

std::string redact_store_url(std::string_view location) { return redact_postgres_url(location); }

}  // namespace corral::store

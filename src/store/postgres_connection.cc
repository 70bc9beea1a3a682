#include "store/postgres_connection.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <stdexcept>

namespace corral::store {

namespace {

constexpr const char* kUniqueViolation = "23505";
constexpr const char* kForeignKeyViolation = "23503";
constexpr const char* kSerializationFailure = "40001";
constexpr const char* kDeadlockDetected = "40P01";
constexpr const char* kDiskFull = "53100";

std::string field(const pg_result* result, int code) {
  const char* text = result == nullptr ? nullptr : PQresultErrorField(result, code);
  return text == nullptr ? std::string() : std::string(text);
}

// libpq's message on one line (it ends its messages with a newline and may have several).
std::string one_line(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

}  // namespace

std::string redact_postgres_url(std::string_view url) {
  // postgresql://user:password@host/… and password=… in the query both hide the password.
  std::string text(url);
  if (auto scheme = text.find("://"); scheme != std::string::npos) {
    auto authority_end = text.find_first_of("/?", scheme + 3);
    auto at = text.rfind('@', authority_end == std::string::npos ? text.size() : authority_end);
    if (at != std::string::npos && at > scheme) {
      auto colon = text.find(':', scheme + 3);
      if (colon != std::string::npos && colon < at) text.replace(colon + 1, at - colon - 1, "***");
    }
  }
  for (size_t from = 0; (from = text.find("password=", from)) != std::string::npos;) {
    size_t start = from + std::strlen("password=");
    size_t end = text.find('&', start);
    text.replace(start, (end == std::string::npos ? text.size() : end) - start, "***");
    from = start;
  }
  return text;
}

PostgresRows::PostgresRows(pg_result* result) : result_(result) {}
PostgresRows::~PostgresRows() { PQclear(result_); }
PostgresRows::PostgresRows(PostgresRows&& other) noexcept : result_(other.result_) {
  other.result_ = nullptr;
}

int PostgresRows::size() const { return PQntuples(result_); }
bool PostgresRows::is_null(int row, int column) const {
  return PQgetisnull(result_, row, column) != 0;
}
std::string PostgresRows::text(int row, int column) const {
  // A column that holds any bytes (bytea) reads as those bytes, as a BLOB does on SQLite.
  if (PQftype(result_, column) == PostgresValue::kBytea) return bytes(row, column);
  return std::string(PQgetvalue(result_, row, column),
                     static_cast<size_t>(PQgetlength(result_, row, column)));
}
int64_t PostgresRows::integer(int row, int column) const {
  if (is_null(row, column)) return 0;
  // Booleans come as t/f in text; the store's own columns are integers.
  const char* value = PQgetvalue(result_, row, column);
  if (value[0] == 't' && value[1] == '\0') return 1;
  if (value[0] == 'f' && value[1] == '\0') return 0;
  return std::stoll(value);
}
std::optional<int64_t> PostgresRows::optional_integer(int row, int column) const {
  if (is_null(row, column)) return std::nullopt;
  return integer(row, column);
}
std::string PostgresRows::bytes(int row, int column) const {
  if (is_null(row, column)) return {};
  size_t length = 0;
  unsigned char* decoded = PQunescapeBytea(
      reinterpret_cast<const unsigned char*>(PQgetvalue(result_, row, column)), &length);
  if (decoded == nullptr) throw StoreError("store: could not decode a bytea value: out of memory");
  std::string bytes(reinterpret_cast<const char*>(decoded), length);
  PQfreemem(decoded);
  return bytes;
}
int64_t PostgresRows::affected() const {
  const char* count = PQcmdTuples(result_);
  return count[0] == '\0' ? 0 : std::stoll(count);
}

PostgresConnection::PostgresConnection(const std::string& url) {
  connection_ = PQconnectdb(url.c_str());
  if (connection_ != nullptr) {
    const char* host = PQhost(connection_);
    const char* database = PQdb(connection_);
    server_ = std::string(host != nullptr ? host : "?") + "/" + (database ? database : "?");
  } else {
    server_ = redact_postgres_url(url);
  }
  if (connection_ == nullptr || PQstatus(connection_) != CONNECTION_OK) {
    std::string why =
        connection_ == nullptr ? "out of memory" : one_line(PQerrorMessage(connection_));
    PQfinish(connection_);
    connection_ = nullptr;
    throw StorageUnavailable("cannot connect to PostgreSQL at " + server_ + " (" + why +
                                 "); check that the server runs, that --store names it rightly "
                                 "and that this user may log in, then retry",
                             false);
  }
  // The store matches failures on SQLSTATE, never on words, and wants no notices or warnings on
  // stderr.
  run_script("SET client_min_messages = error", "configuring a session");
}

PostgresConnection::~PostgresConnection() { PQfinish(connection_); }

void PostgresConnection::reconnect() {
  PQreset(connection_);
  if (PQstatus(connection_) != CONNECTION_OK) {
    throw StorageUnavailable("cannot reach PostgreSQL at " + server_ + " again (" +
                                 one_line(PQerrorMessage(connection_)) +
                                 "); check that the server runs, then retry",
                             false);
  }
  run_script("SET client_min_messages = error", "configuring a session");
}

bool PostgresConnection::usable() const {
  return connection_ != nullptr && PQstatus(connection_) == CONNECTION_OK;
}

std::string PostgresConnection::translate(std::string_view original,
                                          std::vector<std::string>* names) {
  // length(CAST(x AS BLOB)), the store's way of counting a value's bytes, is octet_length(x)
  // here, whether x is text or bytea: PostgreSQL has no BLOB.
  std::string rewritten(original);
  constexpr std::string_view kOpen = "length(CAST(", kClose = " AS BLOB))";
  for (size_t at = 0; (at = rewritten.find(kOpen, at)) != std::string::npos;) {
    size_t close = rewritten.find(kClose, at);
    size_t nested = rewritten.find_first_of("()", at + kOpen.size());
    if (close == std::string::npos || nested < close) {
      at += kOpen.size();
      continue;
    }
    std::string replacement =
        "octet_length(" + rewritten.substr(at + kOpen.size(), close - at - kOpen.size()) + ")";
    rewritten.replace(at, close + kClose.size() - at, replacement);
    at += replacement.size();
  }
  std::string_view sql = rewritten;
  std::string out;
  out.reserve(sql.size() + 8);
  std::vector<std::string> seen;
  char quote = 0;
  for (size_t i = 0; i < sql.size(); ++i) {
    char c = sql[i];
    if (quote != 0) {
      out += c;
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      out += c;
      continue;
    }
    if (c == '?' && i + 1 < sql.size() && std::isdigit(static_cast<unsigned char>(sql[i + 1]))) {
      out += '$';
      continue;
    }
    // :name, but not PostgreSQL's own cast operator (::type).
    bool cast = (i > 0 && sql[i - 1] == ':') || (i + 1 < sql.size() && sql[i + 1] == ':');
    if (c == ':' && !cast && i + 1 < sql.size() &&
        (std::isalpha(static_cast<unsigned char>(sql[i + 1])) || sql[i + 1] == '_')) {
      size_t end = i + 1;
      while (end < sql.size() &&
             (std::isalnum(static_cast<unsigned char>(sql[end])) || sql[end] == '_')) {
        ++end;
      }
      std::string name(sql.substr(i, end - i));
      auto found = std::find(seen.begin(), seen.end(), name);
      if (found == seen.end()) {
        seen.push_back(name);
        found = seen.end() - 1;
      }
      out += "$" + std::to_string(found - seen.begin() + 1);
      i = end - 1;
      continue;
    }
    out += c;
  }
  if (names != nullptr) *names = std::move(seen);
  return out;
}

PostgresRows PostgresConnection::run(std::string_view sql, const std::vector<PostgresValue>& values,
                                     std::string_view what) {
  std::string text = translate(sql);
  std::vector<const char*> pointers;
  std::vector<int> lengths, formats;
  std::vector<unsigned int> types;
  for (const auto& value : values) {
    pointers.push_back(value.is_null() ? nullptr : value.value().data());
    lengths.push_back(value.is_null() ? 0 : static_cast<int>(value.value().size()));
    formats.push_back(value.binary() ? 1 : 0);
    types.push_back(value.type());
  }
  pg_result* result =
      PQexecParams(connection_, text.c_str(), static_cast<int>(values.size()), types.data(),
                   pointers.data(), lengths.data(), formats.data(), 0);
  auto status = PQresultStatus(result);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) fail(result, what);
  return PostgresRows(result);
}

void PostgresConnection::run_script(std::string_view sql, std::string_view what) {
  pg_result* result = PQexec(connection_, std::string(sql).c_str());
  auto status = PQresultStatus(result);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) fail(result, what);
  PQclear(result);
}

void PostgresConnection::fail(pg_result* result, std::string_view what) {
  std::string state = field(result, PG_DIAG_SQLSTATE);
  std::string why = result != nullptr ? one_line(PQresultErrorMessage(result)) : "";
  if (why.empty() && connection_ != nullptr) why = one_line(PQerrorMessage(connection_));
  PQclear(result);
  std::string message = "store: " + std::string(what) + " failed on PostgreSQL at " + server_ +
                        " (" + (why.empty() ? "no reason given" : why) + ")";
  if (state == kUniqueViolation) throw ConstraintError(message, ConstraintError::Rule::unique);
  if (state == kForeignKeyViolation) {
    throw ConstraintError(message, ConstraintError::Rule::foreign_key);
  }
  if (state == kSerializationFailure || state == kDeadlockDetected) {
    throw SerializationFailure(message + "; the transaction may be run again");
  }
  if (state == kDiskFull) {
    throw StorageUnavailable(message + "; the server's disk is full: free some space and retry",
                             true);
  }
  // Class 08 is a lost or refused connection, 57P0x the server shutting down or restarting: the
  // same call may succeed on a new connection once the server is back.
  if (!usable() || state.starts_with("08") || state.starts_with("57P")) {
    throw StorageUnavailable(
        message + "; the connection to the server was lost: check that it runs, then retry", false);
  }
  throw StoreError(message);
}

}  // namespace corral::store

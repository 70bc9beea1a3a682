// The corral CLI against a real corrald: the whole publish → approve → alias → invoke → audit
// flow as a person types it, --json for scripts, and one exit status per kind of failure.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/corrald_process.h"
#include "cli/api_cli_fixture.h"

namespace {

namespace fs = std::filesystem;
using corral::testing::CorraldProcess;
using corral::testing::HttpClient;
using nlohmann::json;
using namespace corral::testing::cli;

const char* kGreeter =
    "function handle(input, ctx)\n"
    "  print('greeting ' .. input.name)\n"
    "  return {greeting = 'hello ' .. input.name}\n"
    "end\n";

TEST_F(ApiCliWithCorrald, FullFlowWithTheAdminToken) {
  CliRun created = as(admin_, {"tenant", "create", "acme"});
  ASSERT_EQ(created.status, 0) << created;
  EXPECT_TRUE(has(created.out, "created tenant acme")) << created;

  CliRun tenants = as(admin_, {"tenant", "list"});
  ASSERT_EQ(tenants.status, 0) << tenants;
  EXPECT_EQ(row(tenants.out, "NAME"), (std::vector<std::string>{"NAME", "ID", "CREATED"}))
      << tenants;
  EXPECT_EQ(row(tenants.out, "acme").size(), 4u) << tenants;  // date and time are two words

  std::string publisher = make_token("acme", "publisher", "alice");
  std::string reviewer = make_token("acme", "reviewer", "bob");
  ASSERT_NE(publisher, reviewer);

  auto file = write("greeter.lua", kGreeter);
  CliRun published = as(publisher, {"publish", file, "--tenant", "acme", "--script", "greeter",
                                    "--capability", "log", "--description", "says hello"});
  ASSERT_EQ(published.status, 0) << published;
  EXPECT_TRUE(has(published.out, "published acme/greeter version 1")) << published;
  EXPECT_TRUE(has(published.out, "pending")) << published;

  CliRun again = as(publisher, {"publish", file, "--tenant", "acme", "--script", "greeter",
                                "--capability", "log", "--description", "says hello"});
  ASSERT_EQ(again.status, 0) << again;
  EXPECT_TRUE(has(again.out, "unchanged")) << again;

  CliRun pending = as(publisher, {"versions", "--tenant", "acme", "--script", "greeter"});
  ASSERT_EQ(pending.status, 0) << pending;
  EXPECT_TRUE(has(pending.out, "VERSION")) << pending;
  auto version_row = row(pending.out, "1");
  ASSERT_GE(version_row.size(), 2u) << pending;
  EXPECT_EQ(version_row[1], "pending");

  // The publisher may not approve (403 → 22, forbidden); the reviewer may.
  CliRun self = as(publisher, {"approve", "--tenant", "acme", "--script", "greeter", "1"});
  EXPECT_EQ(self.status, 22) << self;
  CliRun approved = as(reviewer, {"approve", "--tenant", "acme", "--script", "greeter", "1"});
  ASSERT_EQ(approved.status, 0) << approved;
  EXPECT_TRUE(has(approved.out, "approved acme/greeter version 1")) << approved;

  CliRun aliased =
      as(reviewer, {"alias", "set", "--tenant", "acme", "--script", "greeter", "live", "1"});
  ASSERT_EQ(aliased.status, 0) << aliased;
  EXPECT_TRUE(has(aliased.out, "alias live")) << aliased;

  CliRun listed = as(reviewer, {"versions", "--tenant", "acme", "--script", "greeter"});
  ASSERT_EQ(listed.status, 0) << listed;
  version_row = row(listed.out, "1");
  ASSERT_GE(version_row.size(), 3u) << listed;
  EXPECT_EQ(version_row[1], "approved");
  EXPECT_EQ(version_row[2], "live");
  EXPECT_TRUE(has(listed.out, "says hello")) << listed;

  std::string invoker = make_token("acme", "invoker", "carol");
  CliRun invoked = as(invoker, {"invoke", "--tenant", "acme", "--script", "greeter", "--input",
                                R"({"name": "world"})"});
  ASSERT_EQ(invoked.status, 0) << invoked;
  EXPECT_EQ(json::parse(invoked.out), json({{"greeting", "hello world"}})) << invoked;
  EXPECT_TRUE(has(invoked.err, "[info] greeting world")) << invoked;

  auto input = write("input.json", R"({"name": "file"})");
  CliRun from_file = as(invoker, {"invoke", "--tenant", "acme", "--script", "greeter", "--version",
                                  "1", "--input", "@" + input});
  ASSERT_EQ(from_file.status, 0) << from_file;
  EXPECT_EQ(json::parse(from_file.out), json({{"greeting", "hello file"}})) << from_file;

  CliRun audit = as(admin_, {"audit"});
  ASSERT_EQ(audit.status, 0) << audit;
  for (const char* action :
       {"tenant.create", "token.create", "version.publish", "version.approve", "alias.set"}) {
    EXPECT_TRUE(has(audit.out, action)) << action << "\n" << audit;
  }
  EXPECT_TRUE(has(audit.out, "SEQ")) << audit;
  // The publisher's refused approval is there too, as a denial.
  EXPECT_TRUE(has(audit.out, "deny")) << audit;

  CliRun approvals = as(admin_, {"audit", "--tenant", "acme", "--action", "version.approve"});
  ASSERT_EQ(approvals.status, 0) << approvals;
  EXPECT_TRUE(has(approvals.out, "version.approve")) << approvals;
  EXPECT_FALSE(has(approvals.out, "alias.set")) << approvals;

  CliRun verified = as(admin_, {"audit", "verify"});
  EXPECT_EQ(verified.status, 0) << verified;
  EXPECT_TRUE(has(verified.out, "ok")) << verified;
}

TEST_F(ApiCliWithCorrald, JsonPrintsTheServersAnswer) {
  auto json_of = [](const CliRun& run) {
    EXPECT_EQ(run.status, 0) << run;
    return json::parse(run.out, nullptr, false);
  };
  auto tenant = json_of(as(admin_, {"--json", "tenant", "create", "acme"}));
  EXPECT_EQ(tenant["name"], "acme");
  EXPECT_TRUE(tenant["id"].is_string());
  auto tenants = json_of(as(admin_, {"tenant", "list", "--json"}));
  ASSERT_TRUE(tenants["tenants"].is_array()) << tenants;
  EXPECT_EQ(tenants["tenants"][0]["name"], "acme");

  auto publisher = json_of(as(admin_, {"token", "create", "--tenant", "acme", "--role", "publisher",
                                       "--subject", "p", "--json"}));
  EXPECT_EQ(publisher["role"], "publisher");
  auto reviewer = json_of(as(admin_, {"token", "create", "--tenant", "acme", "--role", "reviewer",
                                      "--subject", "r", "--expires-in-s", "3600", "--json"}));
  EXPECT_TRUE(reviewer["expires_at"].is_string()) << reviewer;

  auto file = write("greeter.lua", kGreeter);
  auto published = json_of(as(publisher["token"].get<std::string>(),
                              {"publish", file, "--tenant", "acme", "--script", "greeter",
                               "--capability", "log", "--deterministic", "--json"}));
  EXPECT_EQ(published["version"], 1);
  EXPECT_EQ(published["created"], true);
  EXPECT_EQ(published["manifest"]["capabilities"], json::array({"log"}));
  EXPECT_EQ(published["manifest"]["deterministic"], true);

  auto versions = json_of(as(publisher["token"].get<std::string>(),
                             {"versions", "--tenant", "acme", "--script", "greeter", "--json"}));
  EXPECT_EQ(versions["versions"][0]["state"], "pending");
  EXPECT_EQ(versions["versions"][0]["source"], kGreeter);

  auto approved =
      json_of(as(reviewer["token"].get<std::string>(),
                 {"approve", "--tenant", "acme", "--script", "greeter", "1", "--json"}));
  EXPECT_EQ(approved["state"], "approved");
  auto alias = json_of(
      as(reviewer["token"].get<std::string>(),
         {"alias", "set", "--tenant", "acme", "--script", "greeter", "live", "1", "--json"}));
  EXPECT_EQ(alias["version"], 1);
  EXPECT_EQ(alias["auto_rollback"], false);
  auto guarded = json_of(as(reviewer["token"].get<std::string>(),
                            {"alias", "set", "--tenant", "acme", "--script", "greeter", "stable",
                             "1", "--auto-rollback", "--json"}));
  EXPECT_EQ(guarded["auto_rollback"], true) << guarded;

  auto result = json_of(
      as(reviewer["token"].get<std::string>(), {"invoke", "--tenant", "acme", "--script", "greeter",
                                                "--input", R"({"name":"x"})", "--json"}));
  EXPECT_EQ(result["outcome"], "ok");
  EXPECT_EQ(result["output"]["greeting"], "hello x");
  EXPECT_EQ(result["version"], 1);
  EXPECT_EQ(result["alias"], "live");

  auto audit = json_of(as(admin_, {"audit", "--json", "--limit", "3"}));
  ASSERT_TRUE(audit["entries"].is_array()) << audit;
  EXPECT_EQ(audit["entries"].size(), 3u);
  EXPECT_EQ(audit["next_after"], 3);
  auto verify = json_of(as(admin_, {"audit", "verify", "--json"}));
  EXPECT_EQ(verify["ok"], true);

  // A refusal with --json: the problem on stdout, unchanged, and its words on stderr.
  CliRun conflict = as(admin_, {"--json", "tenant", "create", "acme"});
  EXPECT_EQ(conflict.status, 25) << conflict;
  auto problem = json::parse(conflict.out, nullptr, false);
  EXPECT_EQ(problem["status"], 409) << conflict;
  EXPECT_TRUE(has(conflict.err, problem["title"].get<std::string>())) << conflict;
}

TEST_F(ApiCliWithCorrald, EnvironmentAndFlags) {
  std::string good = server_;
  std::string bad = "http://127.0.0.1:1";
  CliRun from_env = corral({"tenant", "list"}, {{"CORRAL_SERVER", good}, {"CORRAL_TOKEN", admin_}});
  EXPECT_EQ(from_env.status, 0) << from_env;
  CliRun server_flag_wins = corral({"--server", good, "tenant", "list"},
                                   {{"CORRAL_SERVER", bad}, {"CORRAL_TOKEN", admin_}});
  EXPECT_EQ(server_flag_wins.status, 0) << server_flag_wins;
  CliRun token_flag_wins = corral({"tenant", "list", "--token", "corral_wrong"},
                                  {{"CORRAL_SERVER", good}, {"CORRAL_TOKEN", admin_}});
  EXPECT_EQ(token_flag_wins.status, 21) << token_flag_wins;
  CliRun token_file = corral({"tenant", "list", "--server", good, "--token",
                              "@" + (corrald_->data_dir() / "admin.token").string()});
  EXPECT_EQ(token_file.status, 0) << token_file;
}

TEST_F(ApiCliWithCorrald, MissingTokenExits21WithTheServersDetail) {
  HttpClient http(corrald_->host(), corrald_->port());
  auto direct = http.request(boost::beast::http::verb::get, "/v1/tenants");
  ASSERT_EQ(direct.result_int(), 401u);
  auto problem = json::parse(direct.body());

  CliRun run = corral({"--server", server_, "tenant", "list"});
  EXPECT_EQ(run.status, 21) << run;
  EXPECT_EQ(run.out, "");
  EXPECT_TRUE(has(run.err, problem["title"].get<std::string>())) << run;
  EXPECT_TRUE(has(run.err, problem["detail"].get<std::string>())) << run;
  EXPECT_TRUE(has(run.err, problem["hint"].get<std::string>())) << run;
  EXPECT_TRUE(has(run.err, "CORRAL_TOKEN")) << run;

  CliRun wrong = as("corral_0000", {"tenant", "list"});
  EXPECT_EQ(wrong.status, 21) << wrong;
  EXPECT_TRUE(has(wrong.err, "401")) << wrong;
}

TEST_F(ApiCliWithCorrald, RefusalsExitByKindWithTitleDetailAndHint) {
  auto [publisher, reviewer] = live_script("acme", "greeter", kGreeter);
  CliRun duplicate = as(admin_, {"tenant", "create", "acme"});
  EXPECT_EQ(duplicate.status, 25) << duplicate;
  EXPECT_TRUE(has(duplicate.err, "exists")) << duplicate;
  EXPECT_TRUE(has(duplicate.err, "hint: ")) << duplicate;

  CliRun wrong_role =
      as(publisher, {"alias", "set", "--tenant", "acme", "--script", "greeter", "live", "1"});
  EXPECT_EQ(wrong_role.status, 22) << wrong_role;
  EXPECT_TRUE(has(wrong_role.err, "403")) << wrong_role;
  EXPECT_TRUE(has(wrong_role.err, "reviewer")) << wrong_role;

  CliRun no_script = as(publisher, {"invoke", "--tenant", "acme", "--script", "nope"});
  EXPECT_EQ(no_script.status, 23) << no_script;
  EXPECT_TRUE(has(no_script.err, "404")) << no_script;

  CliRun other_tenant = as(publisher, {"versions", "--tenant", "other", "--script", "greeter"});
  EXPECT_EQ(other_tenant.status, 23) << other_tenant;

  auto bad = write("bad.lua", "function handle(\n");
  CliRun syntax = as(publisher, {"publish", bad, "--tenant", "acme", "--script", "bad"});
  EXPECT_EQ(syntax.status, 20) << syntax;
  EXPECT_TRUE(has(syntax.err, "syntax error")) << syntax;

  CliRun capability = as(publisher, {"publish", bad, "--tenant", "acme", "--script", "bad",
                                     "--capability", "teleport"});
  EXPECT_EQ(capability.status, 20) << capability;

  // A revoked token's next request is refused.
  CliRun token = as(admin_, {"--json", "token", "create", "--tenant", "acme", "--role", "auditor"});
  ASSERT_EQ(token.status, 0) << token;
  auto made = json::parse(token.out);
  CliRun revoked =
      as(admin_, {"token", "revoke", "--tenant", "acme", made["id"].get<std::string>()});
  EXPECT_EQ(revoked.status, 0) << revoked;
  EXPECT_TRUE(has(revoked.out, "revoked token")) << revoked;
  CliRun after = as(made["token"].get<std::string>(), {"audit"});
  EXPECT_EQ(after.status, 21) << after;
}

TEST_F(ApiCliWithCorrald, InvokeExitsByOutcome) {
  CliRun created = as(admin_, {"tenant", "create", "acme"});
  ASSERT_EQ(created.status, 0) << created;
  std::string publisher = make_token("acme", "publisher", "p");
  struct Case {
    const char* script;
    const char* source;
    int status;
    const char* says;
  };
  for (const Case& c : {Case{"fails", "function handle() error('boom') end", 1, "boom"},
                        Case{"spins", "function handle() while true do end end", 3, "limit"},
                        Case{"works", "function handle(input) return input end", 0, ""}}) {
    auto file = write(std::string(c.script) + ".lua", c.source);
    CliRun published = as(publisher, {"publish", file, "--tenant", "acme", "--script", c.script});
    ASSERT_EQ(published.status, 0) << published;
    // A pending version, tried out by its publisher.
    CliRun run = as(publisher, {"invoke", "--tenant", "acme", "--script", c.script, "--version",
                                "1", "--input", "[1,2]"});
    EXPECT_EQ(run.status, c.status) << c.script << "\n" << run;
    EXPECT_TRUE(has(run.err, c.says)) << run;
    EXPECT_EQ(run.out, c.status == 0 ? "[1,2]\n" : "") << run;
  }
  CliRun bad_input = as(publisher, {"invoke", "--tenant", "acme", "--script", "works", "--version",
                                    "1", "--input", "{nope"});
  EXPECT_EQ(bad_input.status, 4) << bad_input;
  EXPECT_TRUE(has(bad_input.err, "--input is not valid JSON")) << bad_input;
}

TEST_F(ApiCliWithCorrald, AuditVerifyExits10WhenTheChainIsBroken) {
  live_script("acme", "greeter", kGreeter);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((corrald_->data_dir() / "corral.db").c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char* error = nullptr;
  ASSERT_EQ(sqlite3_exec(db,
                         "DROP TRIGGER audit_entries_no_update; "
                         "UPDATE audit_entries SET reason = 'nothing happened' WHERE seq = 3",
                         nullptr, nullptr, &error),
            SQLITE_OK)
      << (error ? error : "");
  sqlite3_close(db);
  CliRun verified = as(admin_, {"audit", "verify"});
  EXPECT_EQ(verified.status, 10) << verified;
  EXPECT_TRUE(has(verified.out, "BROKEN")) << verified;
  EXPECT_TRUE(has(verified.out, "3")) << verified;
  EXPECT_TRUE(has(verified.err, "hint: ")) << verified;
}

TEST_F(ApiCliTest, UnreachableServerExits32NamingTheUrl) {
  ClosedPort closed;
  ASSERT_NE(closed.port(), 0);
  std::string url = "http://127.0.0.1:" + std::to_string(closed.port());
  CliRun run = corral({"--server", url, "--token", "x", "tenant", "list"});
  EXPECT_EQ(run.status, 32) << run;
  EXPECT_TRUE(has(run.err, "cannot reach the server at " + url)) << run;
  EXPECT_TRUE(has(run.err, ": nothing accepted the connection there")) << run;
  EXPECT_TRUE(has(run.err, "corrald is running")) << run;
  // corral's words, not libcurl's.
  EXPECT_FALSE(has(run.err, "Failed to connect")) << run;
  EXPECT_FALSE(has(run.err, "Couldn't")) << run;
  EXPECT_EQ(run.out, "");

  CliRun from_env = corral({"audit", "verify"}, {{"CORRAL_SERVER", url}});
  EXPECT_EQ(from_env.status, 32) << from_env;
  EXPECT_TRUE(has(from_env.err, url)) << from_env;

  CliRun unknown_host = corral({"--server", "http://no-such-host.invalid:8080", "tenant", "list"});
  EXPECT_EQ(unknown_host.status, 32) << unknown_host;
  EXPECT_TRUE(has(unknown_host.err, "no-such-host.invalid")) << unknown_host;
}

TEST_F(ApiCliTest, UsageErrorsExit2) {
  auto file = write("s.lua", "function handle() return 1 end");
  for (const std::vector<std::string>& arguments : std::vector<std::vector<std::string>>{
           {},
           {"tenant"},
           {"tenant", "create"},
           {"no-such-command"},
           {"token", "create", "--tenant", "acme"},
           {"token", "create", "--tenant", "acme", "--role", "emperor"},
           {"token", "create", "--tenant", "acme", "--role", "invoker", "--expires-in-s", "0"},
           {"publish", file, "--tenant", "acme"},
           {"approve", "--tenant", "acme", "--script", "s"},
           {"approve", "--tenant", "acme", "--script", "s", "two"},
           {"alias", "set", "--tenant", "acme", "--script", "s", "live"},
           {"invoke", "--tenant", "acme", "--script", "s", "--alias", "live", "--version", "1"},
           {"tenant", "list", "--no-such-flag"},
           {"--server", "ftp://example.com", "tenant", "list"},
           {"--server", "127.0.0.1:8080", "tenant", "list"},
           {"publish", (dir_ / "missing.lua").string(), "--tenant", "a", "--script", "s"},
           {"--token", "@" + (dir_ / "missing.token").string(), "tenant", "list"},
       }) {
    CliRun run = corral(arguments);
    std::string joined;
    for (const auto& argument : arguments) joined += argument + " ";
    EXPECT_EQ(run.status, 2) << joined << "\n" << run;
    EXPECT_FALSE(run.err.empty()) << joined;
  }
  CliRun help = corral({"--help"});
  EXPECT_EQ(help.status, 0) << help;
  for (const char* word :
       {"--server", "--token", "--json", "CORRAL_SERVER", "CORRAL_TOKEN", "tenant", "token",
        "publish", "versions", "approve", "alias", "invoke", "audit", "run"}) {
    EXPECT_TRUE(has(help.out, word)) << word;
  }
}

// A one-shot HTTP server that answers every request with `response`, for what a real corrald
// does not do on demand (a 5xx, a body that is not JSON).
class CannedServer {
 public:
  explicit CannedServer(std::string response) : response_(std::move(response)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address);
    listen(fd_, 4);
    socklen_t length = sizeof address;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] {
      while (true) {
        int client = accept(fd_, nullptr, nullptr);
        if (client < 0 || stop_) {
          if (client >= 0) close(client);
          return;
        }
        std::string request;
        char buffer[4096];
        while (request.find("\r\n\r\n") == std::string::npos) {
          ssize_t got = read(client, buffer, sizeof buffer);
          if (got <= 0) break;
          request.append(buffer, static_cast<size_t>(got));
        }
        (void)!write(client, response_.data(), response_.size());
        close(client);
      }
    });
  }
  ~CannedServer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    // Wake accept() with a connection of our own.
    int wake = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(port_);
    connect(wake, reinterpret_cast<sockaddr*>(&address), sizeof address);
    close(wake);
    thread_.join();
    close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  std::string response_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_ = false;
  std::thread thread_;
};

std::string http_response(int status, const std::string& type, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
         body;
}

TEST_F(ApiCliTest, ServerErrorExits30) {
  json problem = {{"type", "urn:corral:problem:internal"},
                  {"title", "The server could not complete the request"},
                  {"status", 500},
                  {"detail", "disk I/O error"},
                  {"hint", "retry; if it persists, tell the operator"}};
  CannedServer server(http_response(500, "application/problem+json", problem.dump()));
  CliRun run = corral({"--server", server.url(), "--token", "t", "tenant", "list"});
  EXPECT_EQ(run.status, 30) << run;
  for (const char* part : {"The server could not complete the request", "disk I/O error",
                           "hint: retry; if it persists"}) {
    EXPECT_TRUE(has(run.err, part)) << part << "\n" << run;
  }
  // A crashed worker is an outcome: invoke exits 5 as corral run does.
  json crashed = problem;
  crashed["outcome"] = "crashed";
  crashed["title"] = "The worker crashed";
  CannedServer crashing(http_response(500, "application/problem+json", crashed.dump()));
  CliRun invoked = corral(
      {"--server", crashing.url(), "--token", "t", "invoke", "--tenant", "a", "--script", "s"});
  EXPECT_EQ(invoked.status, 5) << invoked;
  EXPECT_TRUE(has(invoked.err, "The worker crashed")) << invoked;
}

TEST_F(ApiCliTest, AnswerThatIsNotJson) {
  CannedServer proxy(http_response(502, "text/html", "<html>Bad Gateway</html>"));
  CliRun run = corral({"--server", proxy.url(), "--token", "t", "tenant", "list"});
  EXPECT_EQ(run.status, 30) << run;
  EXPECT_TRUE(has(run.err, "502")) << run;
  EXPECT_TRUE(has(run.err, "Bad Gateway")) << run;

  CannedServer wrong(http_response(200, "text/html", "<html>hello</html>"));
  CliRun odd = corral({"--server", wrong.url(), "--token", "t", "tenant", "list"});
  EXPECT_EQ(odd.status, 30) << odd;
  EXPECT_TRUE(has(odd.err, "not JSON")) << odd;
}

// ---- signed versions: corral keygen, and publish --sign against a policy that requires them

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

TEST_F(ApiCliTest, KeygenWritesASecretKeyOnlyTheOwnerReadsAndNeverReplacesOne) {
  std::string name = (dir_ / "alice").string();
  CliRun made = corral({"keygen", "--out", name});
  ASSERT_EQ(made.status, 0) << made;
  std::string public_key = first_line(corral::testing::read_text(name + ".pub"));
  EXPECT_EQ(public_key.size(), 44u);  // 32 bytes, standard base64
  EXPECT_EQ(made.out, public_key + "\n") << made;
  EXPECT_TRUE(has(made.err, name + ".key")) << made;
  auto permissions = fs::status(name + ".key").permissions();
  EXPECT_EQ(permissions & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(first_line(corral::testing::read_text(name + ".key")).size(), 88u);  // 64 bytes

  CliRun again = corral({"keygen", "--out", name});
  EXPECT_EQ(again.status, 1) << again;
  EXPECT_TRUE(has(again.err, "exists already")) << again;
  EXPECT_TRUE(has(again.err, "hint: ")) << again;
  EXPECT_EQ(first_line(corral::testing::read_text(name + ".pub")), public_key);

  CliRun nowhere = corral({"keygen", "--out", (dir_ / "missing-dir" / "k").string()});
  EXPECT_EQ(nowhere.status, 1) << nowhere;
  EXPECT_TRUE(has(nowhere.err, "cannot create")) << nowhere;
  EXPECT_EQ(corral({"keygen"}).status, 2);
}

TEST_F(ApiCliTest, PublishSignedVersionsUnderAPolicyThatRequiresThem) {
  std::string alice = (dir_ / "alice").string(), mallory = (dir_ / "mallory").string();
  ASSERT_EQ(corral({"keygen", "--out", alice}).status, 0);
  ASSERT_EQ(corral({"keygen", "--out", mallory}).status, 0);
  std::string public_key = first_line(corral::testing::read_text(alice + ".pub"));
  auto policy = write("policy.yaml",
                      "tenants:\n"
                      "  acme:\n"
                      "    governance:\n"
                      "      signature_required: true\n"
                      "      public_keys: [" +
                          public_key + "]\n");
  CorraldProcess corrald({"--policy", policy});
  std::string server = "http://" + corrald.host() + ":" + std::to_string(corrald.port());
  auto as = [&](const std::string& token, std::vector<std::string> arguments) {
    arguments.insert(arguments.begin(), {"--server", server, "--token", token});
    return corral(arguments);
  };
  std::string admin = corrald.admin_token();
  ASSERT_EQ(as(admin, {"tenant", "create", "acme"}).status, 0);
  CliRun token = as(admin, {"token", "create", "--tenant", "acme", "--role", "publisher"});
  ASSERT_EQ(token.status, 0) << token;
  std::string publisher = first_line(token.out);
  auto file = write("greeter.lua", kGreeter);
  std::vector<std::string> publish = {"publish", file, "--tenant", "acme", "--script", "greeter"};
  auto publish_with = [&](std::vector<std::string> extra) {
    std::vector<std::string> arguments = publish;
    arguments.insert(arguments.end(), extra.begin(), extra.end());
    return as(publisher, arguments);
  };

  CliRun unsigned_ = publish_with({});
  EXPECT_EQ(unsigned_.status, 22) << unsigned_;
  EXPECT_TRUE(has(unsigned_.err, "The version must be signed (HTTP 403)")) << unsigned_;
  EXPECT_TRUE(has(unsigned_.err, "hint: ")) << unsigned_;
  EXPECT_TRUE(has(unsigned_.err, "--sign")) << unsigned_;

  CliRun stranger = publish_with({"--sign", mallory + ".key"});
  EXPECT_EQ(stranger.status, 22) << stranger;
  EXPECT_TRUE(has(stranger.err, "not one of the tenant's public keys")) << stranger;

  // Key files that cannot sign are the caller's to fix: usage errors, nothing is sent.
  CliRun public_file = publish_with({"--sign", alice + ".pub"});
  EXPECT_EQ(public_file.status, 2) << public_file;
  EXPECT_TRUE(has(public_file.err, "holds a public key")) << public_file;
  CliRun missing = publish_with({"--sign", (dir_ / "nobody.key").string()});
  EXPECT_EQ(missing.status, 2) << missing;
  EXPECT_TRUE(has(missing.err, "cannot read the signing key")) << missing;
  CliRun garbage = publish_with({"--sign", write("garbage.key", "not a key\n")});
  EXPECT_EQ(garbage.status, 2) << garbage;
  EXPECT_TRUE(has(garbage.err, "is not a corral signing key")) << garbage;
  std::string damaged = corral::testing::read_text(alice + ".key");
  damaged[60] = damaged[60] == 'A' ? 'B' : 'A';  // in the public half
  CliRun broken = publish_with({"--sign", write("damaged.key", damaged)});
  EXPECT_EQ(broken.status, 2) << broken;
  EXPECT_TRUE(has(broken.err, "damaged")) << broken;

  CliRun published = publish_with({"--sign", alice + ".key"});
  ASSERT_EQ(published.status, 0) << published;
  EXPECT_TRUE(has(published.out, "published acme/greeter version 1")) << published;
  EXPECT_TRUE(has(published.out, "signed by key " + public_key)) << published;

  // Every refusal is in the audit trail, and so is the signed publish.
  CliRun audit = as(admin, {"--json", "audit", "--tenant", "acme", "--action", "version.publish"});
  ASSERT_EQ(audit.status, 0) << audit;
  std::vector<std::string> decisions;
  json entries = json::parse(audit.out)["entries"];
  for (const auto& entry : entries) decisions.push_back(entry["decision"]);
  EXPECT_EQ(decisions, (std::vector<std::string>{"deny", "deny", "allow"})) << audit;
}

// Issue 26: for a tenant with no public keys, `publish --sign` used to print "signed by key …"
// although the server neither checked nor kept the signature. Now the server refuses it, saying
// why, and the CLI claims nothing; without --sign the version is published, and not called signed.
TEST_F(ApiCliWithCorrald, PublishSignClaimsOnlyWhatTheServerVerified) {
  std::string alice = (dir_ / "alice").string();
  ASSERT_EQ(corral({"keygen", "--out", alice}).status, 0);
  ASSERT_EQ(as(admin_, {"tenant", "create", "acme"}).status, 0);
  std::string publisher = make_token("acme", "publisher", "acme-publisher");
  auto file = write("greeter.lua", kGreeter);
  std::vector<std::string> publish = {"publish", file, "--tenant", "acme", "--script", "greeter"};

  std::vector<std::string> signed_publish = publish;
  signed_publish.insert(signed_publish.end(), {"--sign", alice + ".key"});
  CliRun refused = as(publisher, signed_publish);
  EXPECT_EQ(refused.status, 20) << refused;
  EXPECT_FALSE(has(refused.out, "signed by")) << refused;
  EXPECT_TRUE(has(refused.err, "The signature cannot be checked (HTTP 422)")) << refused;
  EXPECT_TRUE(has(refused.err, "no signing keys")) << refused;
  EXPECT_TRUE(has(refused.err, "governance.public_keys")) << refused;

  CliRun published = as(publisher, publish);
  ASSERT_EQ(published.status, 0) << published;
  EXPECT_TRUE(has(published.out, "published acme/greeter version 1")) << published;
  EXPECT_FALSE(has(published.out, "signed")) << published;
}

// `corral alias history`: every move of an alias, newest first, with where it came from.
TEST_F(ApiCliWithCorrald, AliasHistoryListsEveryMoveNewestFirst) {
  auto [publisher, reviewer] = live_script("acme", "greeter", kGreeter);
  auto second = write("second.lua", std::string(kGreeter) + "\n-- v2\n");
  ASSERT_EQ(as(publisher, {"publish", second, "--tenant", "acme", "--script", "greeter"}).status,
            0);
  ASSERT_EQ(as(reviewer, {"approve", "--tenant", "acme", "--script", "greeter", "2"}).status, 0);
  ASSERT_EQ(as(reviewer, {"alias", "set", "--tenant", "acme", "--script", "greeter", "live", "2",
                          "--auto-rollback"})
                .status,
            0);

  CliRun table =
      as(publisher, {"alias", "history", "--tenant", "acme", "--script", "greeter", "live"});
  ASSERT_EQ(table.status, 0) << table;
  EXPECT_TRUE(has(table.out, "FROM")) << table;
  std::istringstream lines(table.out);
  std::vector<std::string> rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(line);
  ASSERT_EQ(rows.size(), 3u) << table;  // the header and two changes
  std::regex newest(R"(^\S+ \S+\s+1\s+2\s+set\s+yes\s.*)");
  std::regex oldest(R"(^\S+ \S+\s+1\s+set\s+no\s.*)");
  EXPECT_TRUE(std::regex_match(rows[1], newest)) << table;
  EXPECT_TRUE(std::regex_match(rows[2], oldest)) << table;

  CliRun listed = as(
      publisher, {"--json", "alias", "history", "--tenant", "acme", "--script", "greeter", "live"});
  ASSERT_EQ(listed.status, 0) << listed;
  json history = json::parse(listed.out)["history"];
  ASSERT_EQ(history.size(), 2u) << listed;
  EXPECT_EQ(history[0]["previous_version"], 1);
  EXPECT_EQ(history[0]["version"], 2);

  CliRun missing =
      as(publisher, {"alias", "history", "--tenant", "acme", "--script", "greeter", "beta"});
  EXPECT_EQ(missing.status, 23) << missing;
  EXPECT_TRUE(has(missing.err, "no alias \"beta\"")) << missing;
}

// `corral tenant export` and `corral tenant erase-data`: a tenant's data on request.
TEST_F(ApiCliWithCorrald, TenantExportWritesTheDataAndEraseDataAsksForYes) {
  auto [publisher, reviewer] = live_script("acme", "greeter", kGreeter);
  std::string invoker = make_token("acme", "invoker", "acme-invoker");
  ASSERT_EQ(as(invoker, {"invoke", "--tenant", "acme", "--script", "greeter", "--input",
                         R"({"name":"ada@example.com"})"})
                .status,
            0);
  std::string out = (dir_ / "acme-export.json").string();
  CliRun exported = as(admin_, {"tenant", "export", "acme", "--out", out});
  ASSERT_EQ(exported.status, 0) << exported;
  EXPECT_TRUE(has(exported.err, "wrote the data of tenant acme to " + out)) << exported;
  json document = json::parse(corral::testing::read_text(out));
  EXPECT_EQ(document["tenant"]["name"], "acme");
  EXPECT_EQ(document["scripts"][0]["script"], "greeter");
  CliRun refused = as(publisher, {"tenant", "export", "acme"});
  EXPECT_EQ(refused.status, 22) << refused;

  CliRun unconfirmed = as(admin_, {"tenant", "erase-data", "acme"});
  EXPECT_EQ(unconfirmed.status, 2) << unconfirmed;
  EXPECT_TRUE(has(unconfirmed.err, "--yes")) << unconfirmed;
  CliRun erased = as(admin_, {"tenant", "erase-data", "acme", "--yes"});
  ASSERT_EQ(erased.status, 0) << erased;
  EXPECT_TRUE(has(erased.out, "erased the data of tenant acme: ")) << erased;
  EXPECT_TRUE(has(erased.out, " jobs, ")) << erased;
}

}  // namespace

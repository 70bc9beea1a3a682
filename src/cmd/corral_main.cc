// corral: the command-line client. `corral run` executes a script locally, in a corral-worker
// process, with no server; the other commands speak corrald's HTTP API (src/client).
#include <CLI/CLI.hpp>
#include <cctype>
#include <charconv>
#include <chrono>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "client/client.h"
#include "client/signing.h"
#include "pool/jail_setup.h"
#include "pool/process_executor.h"

namespace {

// Exit statuses of `corral run`, one per outcome (documented in docs/scripting.md).
int exit_status(corral::Outcome outcome) {
  switch (outcome) {
    case corral::Outcome::ok:
      return 0;
    case corral::Outcome::script_error:
      return 1;
    case corral::Outcome::limit_exceeded:
      return 3;
    case corral::Outcome::invalid:
      return 4;
    case corral::Outcome::crashed:
      return 5;
    case corral::Outcome::denied:
      return 6;
    case corral::Outcome::rejected:
      return 7;
  }
  return 5;
}

std::string read_file(const std::string& path, const char* what) {
  std::ifstream file(path, std::ios::binary);
  if (!file)
    throw std::runtime_error("cannot read " + std::string(what) + " '" + path +
                             "': " + std::strerror(errno));
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

int invalid(const std::string& message) {
  std::cerr << "corral run: invalid: " << message << "\n";
  return exit_status(corral::Outcome::invalid);
}

struct RunOptions {
  std::string script;
  std::string input = "null";
  bool stats = false;
  bool full_result = false;
  std::string worker = corral::default_worker_path();
  nlohmann::json limits = nlohmann::json::object();
};

// One worker, jailed with every layer this machine provides (a missing one is mentioned, not
// fatal: the CLI is for trying scripts out, corrald is where refusing matters).
corral::InvocationResult run_jailed(const std::string& worker_path,
                                    const corral::InvocationRequest& request) {
  corral::JailSetup jail(corral::JailSetup::accept_any_missing());
  for (const auto& status : jail.statuses()) {
    if (!jail.active().has(status.layer)) {
      std::cerr << "corral run: warning: running without the "
                << corral::jail::to_string(status.layer) << " jail layer: " << status.detail
                << "\n";
    }
  }
  // A worker that cannot be started, or dies before it is ready, is no fault of the script,
  // which did not run: `rejected`, as corrald answers it (pool/tenant_pool.h).
  auto not_started = [&](const std::string& why) {
    corral::InvocationResult result;
    result.invocation_id = request.invocation_id;
    result.outcome = corral::Outcome::rejected;
    result.message = "cannot start the worker: " + why + "; the script did not run";
    return result;
  };
  try {
    corral::WorkerProcess worker(jail.spec_for(worker_path, "cli"));
    std::string not_ready =
        worker.wait_until_ready(std::chrono::milliseconds(request.limits.timeout_ms));
    if (!not_ready.empty()) return not_started(not_ready);
    return worker.invoke(request, std::chrono::milliseconds(50));
  } catch (const std::exception& error) {
    return not_started(error.what());
  }
}

int run(const RunOptions& options) {
  corral::InvocationRequest request;
  request.invocation_id = corral::new_invocation_id();
  try {
    request.source = read_file(options.script, "the script");
    std::string input_text = options.input.starts_with('@')
                                 ? read_file(options.input.substr(1), "the input file")
                                 : options.input;
    request.input = corral::parse_untrusted_json(input_text, corral::kMaxDocumentDepth - 1);
  } catch (const nlohmann::json::parse_error& error) {
    return invalid(std::string("--input is not valid JSON: ") + error.what());
  } catch (const std::exception& error) {
    return invalid(error.what());
  }
  try {
    request.limits = corral::LimitsPolicy{}.resolve(options.limits);
  } catch (const corral::InvalidRequest& error) {
    return invalid(error.what());
  }

  corral::InvocationResult result = run_jailed(options.worker, request);

  if (!options.full_result)
    for (const auto& entry : result.logs)
      std::cerr << "[" << entry.level << "] " << entry.message << "\n";
  if (options.full_result) {
    std::cout << corral::to_json(result).dump() << "\n";
  } else if (result.outcome == corral::Outcome::ok) {
    std::cout << result.output.dump() << "\n";
  } else {
    std::cerr << "corral run: " << corral::to_string(result.outcome) << ": "
              << corral::describe_failure(result) << "\n";
    if (!result.traceback.empty()) std::cerr << result.traceback << "\n";
  }
  if (options.stats) std::cerr << "stats: " << corral::to_json(result)["stats"].dump() << "\n";
  return exit_status(result.outcome);
}

}  // namespace

// ---- The commands that speak corrald's API (docs/api.md, "The corral CLI").

namespace server_cli {

namespace client = corral::client;
using nlohmann::json;

// Exit statuses of the server commands, one per kind of answer, none shared with a script
// outcome's (exit_status(): 1 and 3 to 7), so that a script can tell them apart. docs/cli.md has
// the table; keep it, the footer below and these in step.
constexpr int kOk = 0, kUsage = 2, kStillRunning = 8, kCancelled = 9, kChainBroken = 10,
              kBadRequest = 20, kUnauthenticated = 21, kForbidden = 22, kNotFound = 23, kGone = 24,
              kConflict = 25, kQuotaExceeded = 26, kServerError = 30, kUnavailable = 31,
              kUnreachable = 32;

// The exit status of an answer that is not a success and carries no script outcome.
int refusal_status(int http_status) {
  switch (http_status) {
    case 401:
      return kUnauthenticated;
    case 403:
      return kForbidden;
    case 404:
      return kNotFound;
    case 410:
      return kGone;
    case 409:
    case 412:
      return kConflict;
    case 429:
      return kQuotaExceeded;
    case 503:
    case 507:
      return kUnavailable;
  }
  return http_status >= 500 ? kServerError : kBadRequest;
}

// Ends the command with this status; whatever it has to say has been said.
struct Exit {
  int status;
};

struct Globals {
  std::string server = "http://127.0.0.1:8080";
  std::string token;
  bool json = false;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "corral: " << message << "\n";
  throw Exit{kUsage};
}

std::string read_local_file(const std::string& path, const char* what) {
  try {
    return read_file(path, what);
  } catch (const std::exception& error) {
    usage_error(error.what());
  }
}

// --token TOKEN, or @FILE to read it from FILE (the first admin token is in
// <data-dir>/admin.token); surrounding whitespace is dropped.
std::string resolve_token(const std::string& given) {
  std::string token =
      given.starts_with('@') ? read_local_file(given.substr(1), "the token file") : given;
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.front())))
    token.erase(token.begin());
  if (token.find_first_of("\r\n") != std::string::npos)
    usage_error("the token holds a line break; give one token");
  return token;
}

void print_raw(const std::string& body) {
  std::cout << body;
  if (!body.empty() && body.back() != '\n') std::cout << "\n";
}

class Session {
 public:
  explicit Session(Globals& globals) : globals_(globals) {}

  client::Client& client() {
    if (!client_) {
      try {
        client_ = std::make_unique<client::Client>(globals_.server, resolve_token(globals_.token));
      } catch (const client::BadServerUrl& error) {
        usage_error(std::string(error.what()) + "; check --server or CORRAL_SERVER");
      }
    }
    return *client_;
  }

  bool json_mode() const { return globals_.json; }

  client::HttpResponse send(std::string_view method, const std::string& path,
                            const json* body = nullptr,
                            const std::vector<std::string>& headers = {}) {
    try {
      return client().request(method, path, body, headers);
    } catch (const client::Unreachable& error) {
      std::cerr << "corral: cannot reach the server at " << client::printable(error.url) << ": "
                << client::printable(error.what()) << "\n  hint: " << error.hint << "\n";
      throw Exit{kUnreachable};
    }
  }

  // The request's JSON answer, or (having said why) Exit with the refusal's status.
  // With --json and `show_raw`, the answer (or the problem) is also printed unchanged.
  json call(std::string_view method, const std::string& path, const json* body = nullptr,
            bool show_raw = true, const std::vector<std::string>& headers = {}) {
    client::HttpResponse response = send(method, path, body, headers);
    if (!response.ok()) refused(response);
    json parsed = response.json();
    if (parsed.is_discarded()) {
      std::cerr << "corral: the server answered HTTP " << response.status
                << " with a body that is not JSON: "
                << client::printable(response.body.substr(0, 200))
                << "\n  hint: check that --server names corrald and not another service\n";
      throw Exit{kServerError};
    }
    if (show_raw && json_mode()) print_raw(response.body);
    return parsed;
  }

  [[noreturn]] void refused(const client::HttpResponse& response) {
    if (json_mode() && !response.json().is_discarded()) print_raw(response.body);
    report(response);
    throw Exit{refusal_status(response.status)};
  }

  void report(const client::HttpResponse& response) {
    client::Problem problem = client::problem_of(response);
    std::cerr << "corral: " << problem.title << " (HTTP " << response.status << ")\n";
    if (!problem.detail.empty()) std::cerr << "  " << problem.detail << "\n";
    if (!problem.hint.empty()) std::cerr << "  hint: " << problem.hint << "\n";
    if (response.status == 401 && globals_.token.empty())
      std::cerr << "  no token was given: pass --token TOKEN (or @FILE) or set CORRAL_TOKEN\n";
  }

 private:
  Globals& globals_;
  std::unique_ptr<client::Client> client_;
};

std::string text(const json& object, const char* key) {
  if (!object.is_object() || !object.contains(key) || object[key].is_null()) return "";
  const json& value = object[key];
  return value.is_string() ? value.get<std::string>() : value.dump();
}

// "2026-11-23T12:43:29.123Z" → "2026-11-23 12:43:29Z"
std::string when(const json& object, const char* key) {
  std::string time = text(object, key);
  if (time.size() == 24 && time[10] == 'T' && time[19] == '.')
    return time.substr(0, 10) + " " + time.substr(11, 8) + "Z";
  return time;
}

// Who did it, as a person reads it: the subject the server names beside the token id
// ("<key>_subject"), else what it stored ("system", "policy", a token made without a subject).
std::string who(const json& object, const std::string& key) {
  std::string subject = text(object, (key + "_subject").c_str());
  return subject.empty() ? text(object, key.c_str()) : subject;
}

std::string tenant_path(const std::string& tenant) {
  return "/v1/tenants/" + client::escape(tenant);
}

std::string script_path(const std::string& tenant, const std::string& script) {
  return tenant_path(tenant) + "/scripts/" + client::escape(script);
}

// ---- tenants and tokens

int tenant_create(Session& session, const std::string& name) {
  json body = {{"name", name}};
  json tenant = session.call("POST", "/v1/tenants", &body);
  if (session.json_mode()) return kOk;
  std::cout << "created tenant " << client::printable(text(tenant, "name")) << " (id "
            << client::printable(text(tenant, "id")) << ")\n";
  return kOk;
}

int tenant_list(Session& session) {
  json answer = session.call("GET", "/v1/tenants");
  if (session.json_mode()) return kOk;
  std::vector<std::vector<std::string>> rows;
  for (const auto& tenant : answer.value("tenants", json::array()))
    rows.push_back({text(tenant, "name"), text(tenant, "id"), when(tenant, "created_at")});
  std::cout << client::format_table({"NAME", "ID", "CREATED"}, rows);
  return kOk;
}

// The whole export goes to stdout (or --out FILE), JSON either way: it is for keeping or handing
// over, not for reading on a terminal.
int tenant_export(Session& session, const std::string& name, const std::string& out) {
  client::HttpResponse response = session.send("GET", tenant_path(name) + "/export");
  if (!response.ok()) session.refused(response);
  if (out.empty()) {
    print_raw(response.body);
    return kOk;
  }
  std::ofstream file(out, std::ios::binary | std::ios::trunc);
  file << response.body;
  file.close();
  if (!file) usage_error("cannot write the export to '" + out + "': " + std::strerror(errno));
  std::cerr << "wrote the data of tenant " << client::printable(name) << " to " << out << " ("
            << response.body.size() << " bytes)\n";
  return kOk;
}

int tenant_erase_data(Session& session, const std::string& name, bool confirmed) {
  if (!confirmed)
    usage_error("tenant erase-data deletes tenant " + name +
                "'s stored runs, jobs, webhook deliveries, kv entries and events for good; add "
                "--yes to do it (corral tenant export " +
                name + " first keeps a copy)");
  json answer = session.call("DELETE", tenant_path(name) + "/data");
  if (session.json_mode()) return kOk;
  const json& erased = answer.value("erased", json::object());
  std::cout << "erased the data of tenant " << client::printable(name) << ": "
            << text(erased, "stored_runs") << " stored runs, " << text(erased, "jobs") << " jobs, "
            << text(erased, "webhook_deliveries") << " webhook deliveries, "
            << text(erased, "kv_entries") << " kv entries, " << text(erased, "events")
            << " events, " << text(erased, "cached_results") << " cached results\n";
  return kOk;
}

struct TokenOptions {
  std::string tenant;
  std::string role;
  std::optional<int64_t> expires_in_s;
  std::optional<std::string> subject;
  std::string id;
};

// The secret goes alone to stdout (TOKEN=$(corral token create …)); what it is, to stderr.
int token_create(Session& session, const TokenOptions& options) {
  json body = {{"role", options.role}};
  if (options.expires_in_s) body["expires_in_s"] = *options.expires_in_s;
  if (options.subject) body["subject"] = *options.subject;
  std::string path =
      options.tenant.empty() ? "/v1/tokens" : tenant_path(options.tenant) + "/tokens";
  json made = session.call("POST", path, &body);
  if (session.json_mode()) return kOk;
  std::string expires = text(made, "expires_at");
  std::cerr << "created token " << client::printable(text(made, "id")) << ": role "
            << client::printable(text(made, "role"))
            << (options.tenant.empty() ? "" : ", tenant " + client::printable(options.tenant))
            << (text(made, "subject").empty()
                    ? ""
                    : ", subject " + client::printable(text(made, "subject")))
            << ", " << (expires.empty() ? "does not expire" : "expires " + expires)
            << ". It is shown only now; keep it secret:\n";
  std::cout << text(made, "token") << std::endl;
  return kOk;
}

int token_revoke(Session& session, const TokenOptions& options) {
  std::string path = (options.tenant.empty() ? std::string("/v1") : tenant_path(options.tenant)) +
                     "/tokens/" + client::escape(options.id);
  json revoked = session.call("DELETE", path);
  if (session.json_mode()) return kOk;
  std::cout << "revoked token " << client::printable(text(revoked, "id")) << " (at "
            << when(revoked, "revoked_at") << ")\n";
  return kOk;
}

// Never a secret: ids, who holds each token, and whether it is still in use.
int token_list(Session& session, const std::string& tenant) {
  json answer =
      session.call("GET", (tenant.empty() ? std::string("/v1") : tenant_path(tenant)) + "/tokens");
  if (session.json_mode()) return kOk;
  std::vector<std::vector<std::string>> rows;
  for (const auto& token : answer.value("tokens", json::array())) {
    std::string state =
        !text(token, "revoked_at").empty() ? "revoked " + when(token, "revoked_at") : "active";
    rows.push_back(
        {text(token, "id"), text(token, "subject"), text(token, "role"), when(token, "created_at"),
         text(token, "expires_at").empty() ? "never" : when(token, "expires_at"),
         text(token, "last_used_at").empty() ? "never" : when(token, "last_used_at"), state});
  }
  std::cout << client::format_table(
      {"ID", "SUBJECT", "ROLE", "CREATED", "EXPIRES", "LAST USED", "STATE"}, rows);
  return kOk;
}

// ---- policy (admin; explain also for an auditor of its own tenant)

struct PolicyOptions {
  std::optional<int64_t> version;
  std::string file;
  std::optional<std::string> tenant;
  std::vector<std::string> action;  // words: "http.fetch https://x" may come unquoted
};

// The document alone on stdout, so that `corral policy show > policy.yaml` keeps it; which
// version it is, to stderr.
int policy_show(Session& session, const PolicyOptions& options) {
  json snapshot = session.call(
      "GET", "/v1/policy" +
                 client::query_string(
                     {{"version", options.version ? std::optional(std::to_string(*options.version))
                                                  : std::nullopt}}));
  if (session.json_mode()) return kOk;
  std::cerr << "policy version " << text(snapshot, "version") << ", by "
            << client::printable(who(snapshot, "created_by"))
            << (text(snapshot, "created_at").empty() ? "" : " at " + when(snapshot, "created_at"))
            << "\n";
  print_raw(text(snapshot, "document"));
  return kOk;
}

void print_policy_change(const json& accepted) {
  std::cout << "policy version " << text(accepted, "version") << " is in force"
            << (text(accepted, "rolled_back_to").empty()
                    ? ""
                    : " (the document of version " + text(accepted, "rolled_back_to") + ")")
            << "\n";
  for (const auto& change : accepted.value("diff", json::array()))
    std::cout << "  "
              << client::printable(change.is_string() ? change.get<std::string>() : change.dump())
              << "\n";
}

int policy_put(Session& session, const PolicyOptions& options) {
  json body = {{"document", read_local_file(options.file, "the policy file")}};
  client::HttpResponse response;
  try {
    response = session.send("PUT", "/v1/policy", &body);
  } catch (const json::type_error&) {
    usage_error("the policy file '" + options.file +
                "' is not UTF-8 text; save it as UTF-8 and try again");
  }
  if (!response.ok()) {
    // Every problem, where it is in the file, as corrald --policy prints them.
    json problem = response.json();
    if (!session.json_mode() && problem.is_object() && problem.contains("problems")) {
      for (const auto& found : problem["problems"]) {
        std::cerr << options.file << ":" << text(found, "line") << ":" << text(found, "column")
                  << ": " << client::printable(text(found, "path"))
                  << (text(found, "path").empty() ? "" : ": ")
                  << client::printable(text(found, "message")) << "\n";
      }
    }
    session.refused(response);
  }
  json accepted = response.json();
  if (session.json_mode()) {
    print_raw(response.body);
    return kOk;
  }
  print_policy_change(accepted);
  return kOk;
}

int policy_versions(Session& session) {
  json answer = session.call("GET", "/v1/policy/versions");
  if (session.json_mode()) return kOk;
  std::string current = text(answer, "current");
  std::vector<std::vector<std::string>> rows;
  for (const auto& version : answer.value("versions", json::array()))
    rows.push_back({text(version, "version"), text(version, "version") == current ? "yes" : "",
                    when(version, "created_at"), who(version, "created_by")});
  std::cout << client::format_table({"VERSION", "IN FORCE", "CREATED", "CREATED BY"}, rows);
  return kOk;
}

int policy_rollback(Session& session, const PolicyOptions& options) {
  json body = {{"version", options.version.value_or(0)}};
  json accepted = session.call("POST", "/v1/policy/rollback", &body);
  if (session.json_mode()) return kOk;
  print_policy_change(accepted);
  return kOk;
}

// Exits 0 whether the action is allowed or not: the question was answered.
int policy_explain(Session& session, const PolicyOptions& options) {
  std::string action;
  for (const auto& word : options.action) action += (action.empty() ? "" : " ") + word;
  json answer = session.call(
      "GET", "/v1/policy/explain" +
                 client::query_string({{"tenant", options.tenant}, {"action", action}}));
  if (session.json_mode()) return kOk;
  std::cout << (answer.value("allowed", false) ? "allowed" : "denied") << ": "
            << client::printable(text(answer, "action")) << " for tenant "
            << client::printable(text(answer, "tenant"))
            << "\n  rule: " << client::printable(text(answer, "rule"))
            << "\n  reason: " << client::printable(text(answer, "reason"))
            << "\n  policy version: " << text(answer, "policy_version") << "\n";
  return kOk;
}

// ---- scripts

struct ScriptOptions {
  std::string tenant;
  std::string script;
  std::string file;
  std::vector<std::string> capabilities;
  bool deterministic = false;
  std::optional<std::string> description;
  int64_t version = 0;
  std::string alias;
  bool auto_rollback = false;
  std::optional<std::string> sign_key;  // NAME.key
};

// The key to sign with, or (having said why) a usage error: the key is the caller's to fix.
client::SigningKey read_signing_key(const std::string& path) {
  try {
    return client::SigningKey::read(path);
  } catch (const client::KeyFileError& error) {
    usage_error(std::string(error.what()) + "\n  hint: " + error.hint);
  }
}

int publish(Session& session, const ScriptOptions& options) {
  json manifest = {{"runtime", "lua5.4"},
                   {"capabilities", options.capabilities},
                   {"deterministic", options.deterministic}};
  if (options.description) manifest["description"] = *options.description;
  std::string source = read_local_file(options.file, "the script");
  json body = {{"source", source}, {"manifest", manifest}};
  if (options.sign_key) {
    // Signs exactly the bytes sent, so the server's SHA-256 of the source is the one signed.
    client::SigningKey key = read_signing_key(*options.sign_key);
    body["signature"] = key.sign_source(source);
    body["key_id"] = key.public_key();
  }
  json version =
      session.call("POST", script_path(options.tenant, options.script) + "/versions", &body);
  if (session.json_mode()) return kOk;
  std::string which = client::printable(options.tenant + "/" + options.script) + " version " +
                      text(version, "version");
  // Only what the server says it verified and recorded: never the key this command signed with.
  std::string signed_by = text(version, "signed_by").empty()
                              ? ""
                              : ", signed by key " + client::printable(text(version, "signed_by"));
  if (version.value("created", true)) {
    std::cout << "published " << which << " (sha256 " << text(version, "sha256").substr(0, 12)
              << "…" << signed_by << "), " << text(version, "state")
              << (text(version, "approved_by") == "policy"
                      ? " by the policy (approval is not required for this tenant)"
                      : "")
              << "\n";
  } else {
    std::cout << "unchanged: " << which << " already has this source (" << text(version, "state")
              << signed_by << ")\n";
    if (options.sign_key && signed_by.empty()) {
      std::cerr << "corral: note: the signature was checked, but not recorded: the version was "
                   "published unsigned before, and versions do not change\n";
    }
  }
  return kOk;
}

int list_scripts(Session& session, const std::string& tenant) {
  json answer = session.call("GET", tenant_path(tenant) + "/scripts");
  if (session.json_mode()) return kOk;
  std::vector<std::vector<std::string>> rows;
  for (const auto& script : answer.value("scripts", json::array()))
    rows.push_back({text(script, "name"), text(script, "latest_version")});
  std::cout << client::format_table({"SCRIPT", "LATEST"}, rows);
  return kOk;
}

int versions(Session& session, const ScriptOptions& options) {
  std::string path = script_path(options.tenant, options.script);
  json answer = session.call("GET", path + "/versions");
  if (session.json_mode()) return kOk;
  // Which aliases point where, for the ALIASES column.
  std::map<int64_t, std::string> aliases;
  for (const auto& alias :
       session.call("GET", path + "/aliases", nullptr, false).value("aliases", json::array())) {
    auto& names = aliases[alias.value("version", int64_t{0})];
    names += (names.empty() ? "" : ",") + text(alias, "alias");
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& version : answer.value("versions", json::array())) {
    json manifest = version.value("manifest", json::object());
    std::string capabilities;
    for (const auto& capability : manifest.value("capabilities", json::array()))
      capabilities += (capabilities.empty() ? "" : ",") +
                      (capability.is_string() ? capability.get<std::string>() : capability.dump());
    rows.push_back({text(version, "version"), text(version, "state"),
                    aliases[version.value("version", int64_t{0})],
                    text(version, "sha256").substr(0, 12), when(version, "published_at"),
                    who(version, "published_by"), who(version, "approved_by"), capabilities,
                    text(manifest, "description")});
  }
  std::cout << client::format_table({"VERSION", "STATE", "ALIASES", "SHA256", "PUBLISHED",
                                     "PUBLISHED BY", "APPROVED BY", "CAPABILITIES", "DESCRIPTION"},
                                    rows, 32);
  return kOk;
}

int approve(Session& session, const ScriptOptions& options) {
  json version = session.call("POST", script_path(options.tenant, options.script) + "/versions/" +
                                          std::to_string(options.version) + "/approve");
  if (session.json_mode()) return kOk;
  std::cout << "approved " << client::printable(options.tenant + "/" + options.script)
            << " version " << text(version, "version") << " (now " << text(version, "state")
            << ")\n";
  return kOk;
}

int alias_set(Session& session, const ScriptOptions& options) {
  json body = {{"version", options.version}};
  if (options.auto_rollback) body["auto_rollback"] = true;
  json alias = session.call(
      "PUT",
      script_path(options.tenant, options.script) + "/aliases/" + client::escape(options.alias),
      &body);
  if (session.json_mode()) return kOk;
  std::cout << "alias " << client::printable(text(alias, "alias")) << " of "
            << client::printable(options.tenant + "/" + options.script) << " → version "
            << text(alias, "version")
            << (alias.value("auto_rollback", false) ? ", rolled back automatically if quarantined"
                                                    : "")
            << "\n";
  return kOk;
}

// "3 (10 %)": the canary version and its share of the alias's invocations; "" when none.
std::string canary_text(const json& alias) {
  if (!alias.contains("canary") || !alias["canary"].is_object()) return "";
  return text(alias["canary"], "version") + " (" + text(alias["canary"], "weight") + " %)";
}

int alias_list(Session& session, const ScriptOptions& options) {
  json answer = session.call("GET", script_path(options.tenant, options.script) + "/aliases");
  if (session.json_mode()) return kOk;
  std::vector<std::vector<std::string>> rows;
  for (const auto& alias : answer.value("aliases", json::array()))
    rows.push_back({text(alias, "alias"), text(alias, "version"), canary_text(alias),
                    when(alias, "updated_at"), who(alias, "updated_by")});
  std::cout << client::format_table({"ALIAS", "VERSION", "CANARY", "UPDATED", "UPDATED BY"}, rows);
  return kOk;
}

int alias_history(Session& session, const ScriptOptions& options) {
  json answer = session.call("GET", script_path(options.tenant, options.script) + "/aliases/" +
                                        client::escape(options.alias) + "/history");
  if (session.json_mode()) return kOk;
  std::vector<std::vector<std::string>> rows;
  for (const auto& change : answer.value("history", json::array())) {
    rows.push_back({when(change, "changed_at"), text(change, "previous_version"),
                    text(change, "version"), text(change, "change"),
                    change.value("auto_rollback", false) ? "yes" : "no", canary_text(change),
                    who(change, "changed_by")});
  }
  std::cout << client::format_table(
      {"CHANGED", "FROM", "TO", "CHANGE", "AUTO ROLLBACK", "CANARY", "CHANGED BY"}, rows);
  return kOk;
}

struct InvokeOptions {
  std::string tenant;
  std::string script;
  std::optional<std::string> alias;
  std::optional<int64_t> version;
  std::optional<std::string> input;
  bool stats = false;
};

// --input: JSON text, or @FILE to read it from FILE; parsed as any untrusted document (throws
// nlohmann::json::parse_error, or std::runtime_error when the file cannot be read).
json input_from_option(const std::string& option) {
  std::string text =
      option.starts_with('@') ? read_file(option.substr(1), "the input file") : option;
  return corral::parse_untrusted_json(text, corral::kMaxDocumentDepth - 1);
}

// The answer of a run (invoke, replay) as `corral run` prints one: the output JSON on stdout,
// logs and any failure on stderr; the exit status of the outcome, or of the refusal when the
// answer carries none (the script did not run: no such script, a token that may not, …).
int print_run(Session& session, const client::HttpResponse& response, bool stats) {
  json result = response.json();
  std::optional<corral::Outcome> outcome;
  if (result.is_object() && result.contains("outcome") && result["outcome"].is_string())
    outcome = corral::outcome_from_string(result["outcome"].get<std::string>());
  if (!outcome) {
    if (!response.ok()) session.refused(response);
    std::cerr << "corral: the server's answer carries no outcome: "
              << client::printable(response.body.substr(0, 200)) << "\n";
    return kServerError;
  }
  if (session.json_mode()) {
    print_raw(response.body);
    if (*outcome != corral::Outcome::ok) session.report(response);
  } else {
    for (const auto& entry : result.value("logs", json::array())) {
      std::cerr << "[" << client::printable(text(entry, "level")) << "] "
                << client::printable(text(entry, "message")) << "\n";
    }
    if (*outcome == corral::Outcome::ok) {
      std::cout
          << result.value("output", json()).dump(-1, ' ', false, json::error_handler_t::replace)
          << "\n";
    } else {
      session.report(response);
      json error = result.value("error", json::object());
      std::istringstream traceback(text(error, "traceback"));
      for (std::string line; std::getline(traceback, line);)
        std::cerr << client::printable(line) << "\n";
    }
  }
  if (result.contains("deprecated") && result["deprecated"] == true) {
    std::cerr << "corral: warning: version " << text(result, "version")
              << " is deprecated; ask a reviewer to move the alias to a newer version\n";
  }
  if (stats) std::cerr << "stats: " << result.value("stats", json::object()).dump() << "\n";
  return exit_status(*outcome);
}

int invoke(Session& session, const InvokeOptions& options) {
  json body = json::object();
  if (options.input) {
    try {
      body["input"] = input_from_option(*options.input);
    } catch (const nlohmann::json::parse_error& error) {
      std::cerr << "corral invoke: invalid: --input is not valid JSON: " << error.what() << "\n";
      return exit_status(corral::Outcome::invalid);
    } catch (const std::exception& error) {
      std::cerr << "corral invoke: invalid: " << error.what() << "\n";
      return exit_status(corral::Outcome::invalid);
    }
  }
  std::string path =
      script_path(options.tenant, options.script) + "/invoke" +
      client::query_string(
          {{"alias", options.alias},
           {"version",
            options.version ? std::optional(std::to_string(*options.version)) : std::nullopt}});
  return print_run(session, session.send("POST", path, &body), options.stats);
}

// ---- jobs and events

struct JobOptions {
  std::string tenant;
  std::string script;
  std::string id;
  std::optional<std::string> alias;
  std::optional<int64_t> version;
  std::optional<std::string> input;
  std::optional<std::string> callback_url;
  bool no_webhook_input = false;
  std::optional<std::string> idempotency_key;
  std::optional<std::string> state;
  std::optional<std::string> before;
  std::optional<int64_t> limit;
  int64_t timeout_s = 300;
};

std::string job_path(const JobOptions& options) {
  return script_path(options.tenant, options.script) + "/jobs" +
         (options.id.empty() ? "" : "/" + client::escape(options.id));
}

// A key of our own when none is given: the submission is then not recognised if retried by
// running the command again (give --idempotency-key for that).
std::string fresh_idempotency_key() {
  std::ifstream random("/dev/urandom", std::ios::binary);
  unsigned char bytes[16] = {};
  random.read(reinterpret_cast<char*>(bytes), sizeof bytes);
  if (!random) throw std::runtime_error("cannot read /dev/urandom to make an Idempotency-Key");
  static const char* kHex = "0123456789abcdef";
  std::string key = "corral-cli-";
  for (unsigned char byte : bytes) {
    key += kHex[byte >> 4];
    key += kHex[byte & 15];
  }
  return key;
}

// The job id alone on stdout (JOB=$(corral jobs submit …)); what it is, to stderr.
int job_submit(Session& session, const JobOptions& options) {
  json body = json::object();
  if (options.input) {
    try {
      body["input"] = input_from_option(*options.input);
    } catch (const nlohmann::json::parse_error& error) {
      usage_error(std::string("--input is not valid JSON: ") + error.what());
    } catch (const std::exception& error) {
      usage_error(error.what());
    }
  }
  if (options.callback_url) body["callback_url"] = *options.callback_url;
  if (options.no_webhook_input) body["webhook_input"] = false;
  std::string key = options.idempotency_key.value_or(fresh_idempotency_key());
  std::string path =
      job_path(options) +
      client::query_string(
          {{"alias", options.alias},
           {"version",
            options.version ? std::optional(std::to_string(*options.version)) : std::nullopt}});
  json job = session.call("POST", path, &body, true, {"Idempotency-Key: " + key});
  if (session.json_mode()) return kOk;
  std::cerr << "job " << client::printable(text(job, "id")) << ": "
            << client::printable(options.tenant + "/" + options.script) << " version "
            << text(job, "version") << ", " << text(job, "state") << " (Idempotency-Key "
            << client::printable(key) << ")\n";
  std::cout << text(job, "id") << std::endl;
  return kOk;
}

void print_job(const json& job) {
  for (const char* key :
       {"id", "script", "version", "alias", "state", "attempts", "max_attempts", "cancel_requested",
        "created_at", "started_at", "finished_at", "outcome", "status", "error", "callback_url"}) {
    std::string value = key == std::string_view("created_at") ||
                                key == std::string_view("started_at") ||
                                key == std::string_view("finished_at")
                            ? when(job, key)
                            : text(job, key);
    if (!value.empty()) std::cout << key << ": " << client::printable(value) << "\n";
  }
}

int job_show(Session& session, const JobOptions& options) {
  json job = session.call("GET", job_path(options));
  if (session.json_mode()) return kOk;
  print_job(job);
  return kOk;
}

int job_list(Session& session, const JobOptions& options) {
  json page = session.call(
      "GET", job_path(options) +
                 client::query_string(
                     {{"state", options.state},
                      {"before", options.before},
                      {"limit", options.limit ? std::optional(std::to_string(*options.limit))
                                              : std::nullopt}}));
  if (session.json_mode()) return kOk;
  std::vector<std::vector<std::string>> rows;
  for (const auto& job : page.value("jobs", json::array()))
    rows.push_back({text(job, "id"), text(job, "state"), text(job, "version"), text(job, "outcome"),
                    text(job, "attempts"), when(job, "created_at"), when(job, "finished_at")});
  std::cout << client::format_table(
      {"ID", "STATE", "VERSION", "OUTCOME", "ATTEMPTS", "CREATED", "FINISHED"}, rows);
  if (!text(page, "next_before").empty())
    std::cerr << "more jobs follow: add --before " << client::printable(text(page, "next_before"))
              << "\n";
  return kOk;
}

int job_cancel(Session& session, const JobOptions& options) {
  json job = session.call("DELETE", job_path(options));
  if (session.json_mode()) return kOk;
  std::cout << "job " << client::printable(text(job, "id"))
            << (text(job, "state") == "cancelled"
                    ? " cancelled\n"
                    : " is running: cancellation requested; it ends cancelled when its run "
                      "returns\n");
  return kOk;
}

// Polls until the job is final, then answers as `invoke` would have: the output on stdout, logs
// on stderr, the exit status of the outcome.
int job_wait(Session& session, const JobOptions& options) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(options.timeout_s);
  auto pause = std::chrono::milliseconds(100);
  json job;
  for (;;) {
    job = session.call("GET", job_path(options), nullptr, false);
    std::string state = text(job, "state");
    if (state == "succeeded" || state == "failed" || state == "cancelled") break;
    if (std::chrono::steady_clock::now() + pause > deadline) {
      if (session.json_mode()) std::cout << job.dump() << "\n";
      std::cerr << "corral: job " << client::printable(options.id) << " is still "
                << client::printable(state) << " after " << options.timeout_s
                << " s\n  hint: run corral jobs wait again, or give a longer --timeout-s\n";
      return kStillRunning;
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(1000));
  }
  if (session.json_mode()) std::cout << job.dump() << "\n";
  if (text(job, "state") == "cancelled") {
    std::cerr << "corral: job " << client::printable(options.id) << " was cancelled\n";
    return kCancelled;
  }
  const json& result = job.contains("result") ? job["result"] : json();
  std::optional<corral::Outcome> outcome;
  if (result.is_object() && result.contains("outcome") && result["outcome"].is_string())
    outcome = corral::outcome_from_string(result["outcome"].get<std::string>());
  if (!session.json_mode() && result.is_object()) {
    for (const auto& entry : result.value("logs", json::array()))
      std::cerr << "[" << client::printable(text(entry, "level")) << "] "
                << client::printable(text(entry, "message")) << "\n";
    if (outcome == corral::Outcome::ok)
      std::cout
          << result.value("output", json()).dump(-1, ' ', false, json::error_handler_t::replace)
          << "\n";
  }
  if (outcome == corral::Outcome::ok) return kOk;
  // Failed: the run's problem (its title and detail), or why the job failed.
  const json& problem = result.is_object() && result.contains("error") ? result["error"] : result;
  std::cerr << "corral: job " << client::printable(options.id) << " failed"
            << (outcome ? ": " + std::string(corral::to_string(*outcome)) : "") << "\n";
  for (const char* key : {"title", "message", "detail", "hint"})
    if (!text(problem, key).empty())
      std::cerr << "  " << client::printable(text(problem, key)) << "\n";
  if (!text(job, "error").empty())
    std::cerr << "  " << client::printable(text(job, "error")) << "\n";
  // A job that failed without a run (its version disabled before it ran, say): it did not run.
  return exit_status(outcome.value_or(corral::Outcome::rejected));
}

struct EventOptions {
  std::string tenant;
  int64_t after = 0;
  bool follow = false;
  int64_t interval_ms = 1000;
};

// Every event after --after, page by page; with --follow, asks again every --interval-ms for
// new ones until interrupted. One line per event: a table row, or with --json the event's JSON.
int events_tail(Session& session, const EventOptions& options) {
  int64_t after = options.after;
  bool header_printed = false;
  for (;;) {
    json page = session.call(
        "GET",
        tenant_path(options.tenant) + "/events" +
            client::query_string({{"after", std::to_string(after)}, {"limit", "1000"}}),
        nullptr, false);
    const json& events = page.value("events", json::array());
    for (const auto& event : events) {
      if (session.json_mode()) {
        std::cout << event.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
        continue;
      }
      if (!header_printed) {
        std::cout << "SEQ  TIME  TOPIC  PAYLOAD\n";
        header_printed = true;
      }
      std::cout << text(event, "seq") << "  " << when(event, "created_at") << "  "
                << client::printable(text(event, "topic")) << "  "
                << client::printable(event.value("payload", json())
                                         .dump(-1, ' ', false, json::error_handler_t::replace))
                << "\n";
    }
    std::cout.flush();
    if (page.contains("next_after") && page["next_after"].is_number_integer())
      after = page["next_after"].get<int64_t>();
    if (!events.empty()) continue;  // a full page may have more behind it
    if (!options.follow) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(options.interval_ms));
  }
  if (!options.follow) std::cerr << "next: corral events tail --after " << after << "\n";
  return kOk;
}

// ---- usage for billing

struct UsageOptions {
  std::string tenant;
  std::optional<std::string> from, to;
  std::string by = "script";
};

// What a tenant's scripts used in a window: a row per script (or hour) and the total on stdout,
// then what the tenant stores now; the window the server used on stderr.
int usage(Session& session, const UsageOptions& options) {
  json report = session.call(
      "GET",
      tenant_path(options.tenant) + "/usage" +
          client::query_string({{"from", options.from}, {"to", options.to}, {"by", options.by}}));
  if (session.json_mode()) return kOk;
  auto cpu_ms = [](const json& counts) {
    std::ostringstream text;
    text << std::fixed << std::setprecision(1) << counts.value("cpu_ms", 0.0);
    return text.str();
  };
  auto counts_row = [&](std::string first, const json& counts) {
    return std::vector<std::string>{std::move(first),         text(counts, "invocations"),
                                    text(counts, "failures"), cpu_ms(counts),
                                    text(counts, "fuel"),     text(counts, "jobs")};
  };
  bool by_hour = text(report, "by") == "hour";
  std::vector<std::vector<std::string>> rows;
  for (const auto& row : report.value("usage", json::array())) {
    std::string first = by_hour ? when(row, "hour") : text(row, "script");
    rows.push_back(counts_row(first.empty() ? "(playground)" : first, row));
  }
  rows.push_back(counts_row("total", report.value("total", json::object())));
  std::cout << client::format_table(
      {by_hour ? "HOUR" : "SCRIPT", "INVOCATIONS", "FAILURES", "CPU MS", "FUEL", "JOBS"}, rows);
  const json& storage = report.value("storage", json::object());
  auto count_of = [&](const char* key, const std::string& noun) {
    std::string count = text(storage, key);
    return count + " " + noun + (count == "1" ? "" : "s");
  };
  std::cout << "stored now: " << count_of("versions", "version") << " ("
            << text(storage, "version_bytes") << " bytes of source), "
            << count_of("kv_keys", "kv key") << " (" << text(storage, "kv_bytes") << " bytes)\n";
  std::cerr << "usage of " << client::printable(text(report, "tenant")) << " from "
            << when(report, "from") << " to " << when(report, "to") << " (UTC, to exclusive)\n";
  return kOk;
}

// ---- secrets (admin): names and times only; a value goes in and never comes back out

struct SecretOptions {
  std::string tenant;
  std::string name;
  std::string value_file;
};

std::string secret_path(const SecretOptions& options) {
  return tenant_path(options.tenant) + "/secrets" +
         (options.name.empty() ? "" : "/" + client::escape(options.name));
}

int secret_list(Session& session, const SecretOptions& options) {
  json answer = session.call("GET", secret_path(options));
  if (session.json_mode()) return kOk;
  std::vector<std::vector<std::string>> rows;
  for (const auto& secret : answer.value("secrets", json::array()))
    rows.push_back({text(secret, "name"), when(secret, "updated_at")});
  std::cout << client::format_table({"NAME", "UPDATED"}, rows);
  return kOk;
}

// The value comes from a file or stdin, never the command line, where the shell's history and
// `ps` would keep it. One trailing line break (what `echo` and editors add) is not part of it.
int secret_put(Session& session, const SecretOptions& options) {
  std::string value;
  if (options.value_file == "-") {
    std::ostringstream read;
    read << std::cin.rdbuf();
    value = read.str();
  } else {
    value = read_local_file(options.value_file, "the secret's value file");
  }
  if (value.ends_with("\r\n")) {
    value.resize(value.size() - 2);
  } else if (value.ends_with('\n')) {
    value.pop_back();
  }
  if (value.empty())
    usage_error("the secret's value is empty; put the value in --value-file FILE (or - for stdin)");
  json body = {{"value", value}};
  client::HttpResponse response;
  try {
    response = session.send("PUT", secret_path(options), &body);
  } catch (const json::type_error&) {
    usage_error(
        "the secret's value is not UTF-8 text; secrets are text (encode binary ones, in "
        "base64 say)");
  }
  if (!response.ok()) session.refused(response);
  json stored = response.json();
  if (session.json_mode()) {
    print_raw(response.body);
    return kOk;
  }
  std::cout << (stored.value("created", false) ? "created" : "replaced") << " secret "
            << client::printable(text(stored, "name")) << " of tenant "
            << client::printable(text(stored, "tenant")) << " (" << value.size() << " bytes)\n";
  return kOk;
}

int secret_delete(Session& session, const SecretOptions& options) {
  json deleted = session.call("DELETE", secret_path(options));
  if (session.json_mode()) return kOk;
  std::cout << "deleted secret " << client::printable(text(deleted, "name")) << " of tenant "
            << client::printable(text(deleted, "tenant")) << "\n";
  return kOk;
}

// ---- stored runs and replay

struct RunsOptions {
  std::string tenant;
  std::string script;
  std::string id;
  std::optional<int64_t> limit;
  int64_t version = 0;
  bool stats = false;
};

int runs_list(Session& session, const RunsOptions& options) {
  json answer = session.call(
      "GET", script_path(options.tenant, options.script) + "/runs" +
                 client::query_string(
                     {{"limit", options.limit ? std::optional(std::to_string(*options.limit))
                                              : std::nullopt}}));
  if (session.json_mode()) return kOk;
  std::vector<std::vector<std::string>> rows;
  for (const auto& run : answer.value("runs", json::array()))
    rows.push_back({text(run, "id"), when(run, "time"), text(run, "version"), text(run, "outcome"),
                    run.value("input_stored", false) ? "yes" : "no"});
  std::cout << client::format_table({"ID", "TIME", "VERSION", "OUTCOME", "INPUT STORED"}, rows);
  return kOk;
}

int runs_show(Session& session, const RunsOptions& options) {
  json run = session.call(
      "GET", script_path(options.tenant, options.script) + "/runs/" + client::escape(options.id));
  if (session.json_mode()) return kOk;
  auto compact = [](const json& value) {
    return client::printable(value.dump(-1, ' ', false, json::error_handler_t::replace));
  };
  std::cout << "id: " << client::printable(text(run, "id")) << "\n"
            << "script: " << client::printable(text(run, "script")) << "\n"
            << "version: " << text(run, "version") << "\n"
            << "time: " << when(run, "time") << "\n"
            << "outcome: " << client::printable(text(run, "outcome")) << "\n"
            << "input: "
            << (run.value("input_stored", false) ? compact(run.value("input", json()))
                                                 : "(not stored: the policy's runs.inputs is off)")
            << "\n";
  const json& result = run.contains("result") ? run["result"] : json();
  if (result.is_object() && result.contains("output"))
    std::cout << "output: " << compact(result["output"]) << "\n";
  if (result.is_object() && result.contains("error")) {
    for (const char* key : {"type", "message", "limit"}) {
      if (!text(result["error"], key).empty())
        std::cout << "error " << key << ": " << client::printable(text(result["error"], key))
                  << "\n";
    }
  }
  return kOk;
}

// Runs the stored run's input against --version and answers as invoke does; whether the outcome
// and output are the same as the stored run's goes to stderr.
int runs_replay(Session& session, const RunsOptions& options) {
  std::string path = script_path(options.tenant, options.script) + "/versions/" +
                     std::to_string(options.version) + "/replay" +
                     client::query_string({{"run", options.id}});
  client::HttpResponse response = session.send("POST", path, nullptr);
  json replay_of =
      response.json().is_object() ? response.json().value("replay_of", json()) : json();
  if (replay_of.is_object() && !session.json_mode()) {
    auto same = [&](const char* key) { return replay_of.value(key, false) ? "same" : "DIFFERENT"; };
    std::cerr << "replayed run " << client::printable(text(replay_of, "run")) << " (version "
              << text(replay_of, "version") << ", " << client::printable(text(replay_of, "outcome"))
              << ") on version " << options.version << ": " << same("same_outcome") << " outcome, "
              << same("same_output") << " output\n";
  }
  return print_run(session, response, options.stats);
}

// ---- one version: show, deprecate, disable

int version_show(Session& session, const ScriptOptions& options) {
  json version = session.call("GET", script_path(options.tenant, options.script) + "/versions/" +
                                         std::to_string(options.version));
  if (session.json_mode()) return kOk;
  json manifest = version.value("manifest", json::object());
  std::cerr << "version " << text(version, "version") << " of "
            << client::printable(options.tenant + "/" + options.script) << ": "
            << text(version, "state") << ", sha256 " << text(version, "sha256") << "\n  published "
            << when(version, "published_at") << " by "
            << client::printable(who(version, "published_by"))
            << (text(version, "approved_by").empty()
                    ? ""
                    : "; approved " + when(version, "approved_at") + " by " +
                          client::printable(who(version, "approved_by")))
            << (text(version, "signed_by").empty()
                    ? ""
                    : "; signed by key " + client::printable(text(version, "signed_by")))
            << "\n  manifest: "
            << client::printable(manifest.dump(-1, ' ', false, json::error_handler_t::replace))
            << "\n";
  // The source alone on stdout, so that `corral version show … > v3.lua` keeps it.
  print_raw(text(version, "source"));
  return kOk;
}

int version_change(Session& session, const ScriptOptions& options, const std::string& verb) {
  json version = session.call("POST", script_path(options.tenant, options.script) + "/versions/" +
                                          std::to_string(options.version) + "/" + verb);
  if (session.json_mode()) return kOk;
  std::cout << client::printable(options.tenant + "/" + options.script) << " version "
            << text(version, "version") << " is now " << text(version, "state")
            << (verb == "disable" ? ": invoking it is refused (410) from now on"
                                  : ": still served, each answer flagged deprecated")
            << "\n";
  return kOk;
}

// ---- canaries: another approved version takes a share of an alias's invocations

// The alias's version and auto-rollback stay as they are: the API sets them with the canary, so
// they are read first and sent back unchanged.
int alias_canary(Session& session, const ScriptOptions& options,
                 std::optional<int64_t> canary_weight) {
  std::string path =
      script_path(options.tenant, options.script) + "/aliases/" + client::escape(options.alias);
  std::optional<json> current;
  for (const auto& alias :
       session.call("GET", script_path(options.tenant, options.script) + "/aliases", nullptr, false)
           .value("aliases", json::array()))
    if (text(alias, "alias") == options.alias) current = alias;
  if (!current) {
    std::cerr << "corral: no alias " << client::printable(options.alias) << " on "
              << client::printable(options.tenant + "/" + options.script)
              << "\n  hint: corral alias set points it at a version first; corral alias list "
                 "shows the aliases\n";
    throw Exit{kNotFound};
  }
  json body = {{"version", current->value("version", int64_t{0})},
               {"auto_rollback", current->value("auto_rollback", false)}};
  if (canary_weight) body["canary"] = {{"version", options.version}, {"weight", *canary_weight}};
  json alias = session.call("PUT", path, &body);
  if (session.json_mode()) return kOk;
  std::cout << "alias " << client::printable(text(alias, "alias")) << " of "
            << client::printable(options.tenant + "/" + options.script) << " → version "
            << text(alias, "version")
            << (canary_text(alias).empty() ? ", no canary"
                                           : ", canary version " + canary_text(alias))
            << "\n";
  return kOk;
}

// ---- webhooks

struct WebhookOptions {
  std::string tenant;
  std::optional<std::string> state, before;
  std::optional<int64_t> limit;
};

// The secret goes alone to stdout (SECRET=$(corral webhook rotate-secret …)); what it is, to
// stderr.
int webhook_rotate_secret(Session& session, const WebhookOptions& options) {
  json made = session.call("POST", tenant_path(options.tenant) + "/webhook-secret");
  if (session.json_mode()) return kOk;
  std::cerr << (made.value("replaced", false) ? "replaced" : "created")
            << " the webhook secret of tenant " << client::printable(text(made, "tenant"))
            << ": deliveries from now on carry " << client::printable(text(made, "header")) << " ("
            << client::printable(text(made, "algorithm"))
            << "). It is shown only now; give it to the receiver and keep it secret:\n";
  std::cout << text(made, "secret") << std::endl;
  return kOk;
}

int webhook_deliveries(Session& session, const WebhookOptions& options) {
  json page = session.call(
      "GET", tenant_path(options.tenant) + "/deliveries" +
                 client::query_string(
                     {{"state", options.state},
                      {"before", options.before},
                      {"limit", options.limit ? std::optional(std::to_string(*options.limit))
                                              : std::nullopt}}));
  if (session.json_mode()) return kOk;
  std::vector<std::vector<std::string>> rows;
  for (const auto& delivery : page.value("deliveries", json::array())) {
    rows.push_back({text(delivery, "id"), text(delivery, "job_id"), text(delivery, "state"),
                    text(delivery, "attempts") + "/" + text(delivery, "max_attempts"),
                    text(delivery, "last_status"), when(delivery, "updated_at"),
                    text(delivery, "url"), text(delivery, "last_error")});
  }
  std::cout << client::format_table(
      {"ID", "JOB", "STATE", "ATTEMPTS", "LAST STATUS", "UPDATED", "URL", "LAST ERROR"}, rows);
  if (!text(page, "next_before").empty())
    std::cerr << "more deliveries follow: add --before "
              << client::printable(text(page, "next_before")) << "\n";
  return kOk;
}

// ---- audit

struct AuditOptions {
  std::optional<std::string> tenant, action, since, until;
  std::optional<int64_t> after, limit;
};

int audit(Session& session, const AuditOptions& options) {
  auto number = [](const std::optional<int64_t>& value) {
    return value ? std::optional(std::to_string(*value)) : std::nullopt;
  };
  json page =
      session.call("GET", "/v1/audit" + client::query_string({{"tenant", options.tenant},
                                                              {"action", options.action},
                                                              {"since", options.since},
                                                              {"until", options.until},
                                                              {"after", number(options.after)},
                                                              {"limit", number(options.limit)}}));
  if (session.json_mode()) return kOk;
  std::vector<std::vector<std::string>> rows;
  for (const auto& entry : page.value("entries", json::array())) {
    rows.push_back({text(entry, "seq"), when(entry, "time"), who(entry, "principal"),
                    text(entry, "tenant"), text(entry, "action"), text(entry, "decision"),
                    text(entry, "target"), text(entry, "reason")});
  }
  std::cout << client::format_table(
      {"SEQ", "TIME", "PRINCIPAL", "TENANT", "ACTION", "DECISION", "TARGET", "REASON"}, rows, 56);
  if (page.contains("next_after") && page["next_after"].is_number_integer()) {
    std::cerr << "more entries follow: add --after " << page["next_after"].get<int64_t>() << "\n";
  }
  return kOk;
}

int audit_verify(Session& session) {
  json report = session.call("GET", "/v1/audit/verify");
  bool ok = report.value("ok", false);
  if (!session.json_mode()) {
    if (ok) {
      std::cout << "ok: the audit chain verifies (" << text(report, "entries_checked")
                << " entries checked)\n";
    } else {
      std::cout << "BROKEN: the audit chain does not verify from entry "
                << text(report, "first_bad_seq") << " (" << text(report, "entries_checked")
                << " entries checked)\n";
    }
  }
  if (!ok) {
    std::cerr << "corral: the audit chain does not verify: "
              << client::printable(text(report, "problem")) << "\n";
    if (!text(report, "hint").empty())
      std::cerr << "  hint: " << client::printable(text(report, "hint")) << "\n";
    return kChainBroken;
  }
  return kOk;
}

}  // namespace server_cli

namespace {

// `corral keygen --out NAME`: needs no server. The public key alone goes to stdout, so that
// PUB=$(corral keygen --out NAME) can go into the policy; what was written, to stderr.
int keygen(const std::string& name) {
  try {
    corral::client::KeyFiles files = corral::client::write_key_pair(name);
    std::cerr << "wrote the secret key to " << files.secret_path << " (mode 0600; keep it secret) "
              << "and the public key to " << files.public_path
              << ".\nList the public key under the tenant's governance.public_keys in the "
                 "policy, then publish with --sign "
              << files.secret_path << ". The public key:\n";
    std::cout << files.public_key << std::endl;
    return 0;
  } catch (const corral::client::KeyFileError& error) {
    std::cerr << "corral keygen: " << error.what() << "\n  hint: " << error.hint << "\n";
    return 1;
  }
}

}  // namespace

namespace {

constexpr const char* kFooter =
    "Server commands speak to corrald at --server (or CORRAL_SERVER; default\n"
    "http://127.0.0.1:8080) with --token (or CORRAL_TOKEN; @FILE reads it from FILE, such as\n"
    "@data/admin.token); the flags win over the environment. Tables by default; --json prints\n"
    "the server's JSON unchanged. Errors print the server's title, detail and hint to stderr.\n"
    "\n"
    "Exit status (docs/cli.md): 0 success, 2 usage; the server refused: 20 bad request,\n"
    "21 unauthenticated, 22 forbidden, 23 not found, 24 gone, 25 conflict, 26 quota or rate;\n"
    "30 server error, 31 server unavailable (try again later), 32 cannot reach the server;\n"
    "10 audit verify found the chain broken. invoke, runs replay and jobs wait exit by the\n"
    "script's outcome as corral run does: 0 ok, 1 script_error, 3 limit_exceeded (fuel,\n"
    "memory, time, output, logs), 4 invalid, 5 crashed, 6 denied, 7 rejected (did not run);\n"
    "jobs wait: 8 not ended at --timeout-s, 9 cancelled.";

// A whole number of 1 or more (CLI::PositiveNumber's message prints a 300-digit bound).
const CLI::Validator kCountingNumber(
    [](std::string& value) -> std::string {
      int64_t number = 0;
      auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), number);
      if (error != std::errc() || end != value.data() + value.size() || number < 1)
        return "must be a whole number of 1 or more, not \"" + value + "\"";
      return "";
    },
    "N>=1", "counting number");

// A subcommand that talks to the server: options it does not know (--server, --token, --json)
// fall through to the top level, so they may come before or after it.
CLI::App* server_command(CLI::App& parent, const std::string& name,
                         const std::string& description) {
  CLI::App* command = parent.add_subcommand(name, description);
  command->fallthrough();
  return command;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "corral: run Lua 5.4 scripts in corral's sandbox, and manage them on a corrald server"};
  app.require_subcommand(1);

  RunOptions options;
  auto* run_command = app.add_subcommand(
      "run",
      "Run SCRIPT's handle(input, ctx) once in a sandboxed worker and print the output JSON.\n"
      "Exit status: 0 ok, 1 script_error, 2 usage, 3 limit_exceeded, 4 invalid, 5 crashed.");
  run_command->add_option("script", options.script, "Lua file defining handle(input, ctx)")
      ->required();
  run_command->add_option("--input,-i", options.input,
                          "input JSON, or @FILE to read it from FILE (default: null)");
  run_command->add_flag("--stats", options.stats,
                        "also print fuel_used, memory_peak_bytes, wall_ms and cpu_ms (to stderr)");
  run_command->add_flag("--json", options.full_result,
                        "print the whole result object (outcome, output or error, logs, stats)");
  run_command->add_option("--worker", options.worker,
                          "the corral-worker binary to run the script in");
  for (const char* limit : {"fuel", "memory_bytes", "timeout_ms", "output_bytes", "log_bytes"}) {
    std::string flag = "--" + std::string(limit);
    std::replace(flag.begin(), flag.end(), '_', '-');
    run_command->add_option_function<int64_t>(
        flag, [&options, limit](int64_t value) { options.limits[limit] = value; },
        std::string("the ") + limit + " limit for this run");
  }

  std::string key_name;
  auto* keygen_command = app.add_subcommand(
      "keygen",
      "Make an Ed25519 key pair for signing versions: NAME.key (secret, mode 0600) and NAME.pub;\n"
      "print the public key, the form the policy's governance.public_keys takes.\n"
      "Never replaces existing files. Exit status: 0 written, 1 not written, 2 usage.");
  keygen_command->add_option("--out", key_name, "NAME: the files are NAME.key and NAME.pub")
      ->required();

  // ---- the server commands
  using namespace server_cli;
  Globals globals;
  app.add_option("--server", globals.server, "corrald's URL")
      ->envname("CORRAL_SERVER")
      ->capture_default_str();
  app.add_option("--token", globals.token, "bearer token, or @FILE to read it from FILE")
      ->envname("CORRAL_TOKEN");
  app.add_flag("--json", globals.json, "print the server's JSON answer unchanged");
  std::function<int(Session&)> action;

  auto* tenant =
      server_command(app, "tenant", "Create, list and export tenants, erase their data (admin)");
  tenant->require_subcommand(1);
  std::string tenant_name;
  auto* tenant_create_command = server_command(*tenant, "create", "Create tenant NAME");
  tenant_create_command->add_option("name", tenant_name, "the new tenant's name")->required();
  tenant_create_command->callback(
      [&] { action = [&](Session& s) { return tenant_create(s, tenant_name); }; });
  server_command(*tenant, "list", "List the tenants the token sees")->callback([&] {
    action = [](Session& s) { return tenant_list(s); };
  });
  std::string export_path;
  auto* tenant_export_command = server_command(
      *tenant, "export",
      "Print everything corrald keeps for tenant NAME as JSON (admin), secrets' values excepted");
  tenant_export_command->add_option("name", tenant_name, "the tenant")->required();
  tenant_export_command->add_option("--out", export_path, "write it to FILE instead of stdout");
  tenant_export_command->callback(
      [&] { action = [&](Session& s) { return tenant_export(s, tenant_name, export_path); }; });
  bool erase_confirmed = false;
  auto* tenant_erase_command = server_command(
      *tenant, "erase-data",
      "Delete tenant NAME's customer data: stored runs, jobs, deliveries, kv, events (admin)");
  tenant_erase_command->add_option("name", tenant_name, "the tenant")->required();
  tenant_erase_command->add_flag("--yes", erase_confirmed, "yes, delete it for good");
  tenant_erase_command->callback([&] {
    action = [&](Session& s) { return tenant_erase_data(s, tenant_name, erase_confirmed); };
  });

  TokenOptions token_options;
  auto* token = server_command(app, "token", "Create, list and revoke tokens (admin)");
  token->require_subcommand(1);
  auto* token_create_command =
      server_command(*token, "create", "Create a token and print it (only this once) on stdout");
  token_create_command->add_option("--tenant", token_options.tenant,
                                   "the tenant it belongs to (leave out for an admin token)");
  token_create_command
      ->add_option("--role", token_options.role, "publisher, reviewer, invoker, auditor or admin")
      ->required()
      ->check(CLI::IsMember({"admin", "publisher", "reviewer", "invoker", "auditor"}));
  token_create_command
      ->add_option("--expires-in-s", token_options.expires_in_s, "expire after N seconds")
      ->check(kCountingNumber);
  token_create_command->add_option("--subject", token_options.subject,
                                   "who holds it (self-approval compares subjects)");
  token_create_command->callback(
      [&] { action = [&](Session& s) { return token_create(s, token_options); }; });
  auto* token_revoke_command = server_command(*token, "revoke", "Revoke the token with id ID");
  token_revoke_command->add_option("--tenant", token_options.tenant,
                                   "the tenant it belongs to (leave out for an admin token)");
  token_revoke_command->add_option("id", token_options.id, "the token's id (not its secret)")
      ->required();
  token_revoke_command->callback(
      [&] { action = [&](Session& s) { return token_revoke(s, token_options); }; });

  auto* token_list_command = server_command(
      *token, "list",
      "List tokens: id, subject, role, created, expires, last used (never the secrets)");
  token_list_command->add_option(
      "--tenant", token_options.tenant,
      "the tenant whose tokens to list (leave out for the admin tokens)");
  token_list_command->callback(
      [&] { action = [&](Session& s) { return token_list(s, token_options.tenant); }; });

  PolicyOptions policy_options;
  auto* policy = server_command(
      app, "policy", "Read, replace, roll back and explain the policy (admin; explain: auditor)");
  policy->require_subcommand(1);
  auto* policy_show_command = server_command(
      *policy, "show",
      "Print the policy document in force (or --version N) on stdout; which version, on stderr");
  policy_show_command
      ->add_option("--version", policy_options.version,
                   "a stored version instead (0 is the built-in safe default)")
      ->check(CLI::NonNegativeNumber);
  policy_show_command->callback(
      [&] { action = [&](Session& s) { return policy_show(s, policy_options); }; });
  auto* policy_put_command = server_command(
      *policy, "put",
      "Check the YAML document in FILE and, if valid, store it as the next version in force;\n"
      "if not, print each problem as FILE:LINE:COLUMN: PATH: MESSAGE and change nothing");
  policy_put_command->add_option("file", policy_options.file, "the policy's YAML file")->required();
  policy_put_command->callback(
      [&] { action = [&](Session& s) { return policy_put(s, policy_options); }; });
  server_command(*policy, "versions", "List the stored policy versions, newest first")
      ->callback([&] { action = [](Session& s) { return policy_versions(s); }; });
  auto* policy_rollback_command = server_command(
      *policy, "rollback",
      "Store VERSION's document again as the next version (0: the built-in safe default)");
  policy_rollback_command->add_option("version", policy_options.version, "a stored version")
      ->required()
      ->check(CLI::NonNegativeNumber);
  policy_rollback_command->callback(
      [&] { action = [&](Session& s) { return policy_rollback(s, policy_options); }; });
  auto* policy_explain_command = server_command(
      *policy, "explain",
      "Say whether the policy allows ACTION for a tenant, by which rule and why; exit 0 either "
      "way.\nACTION: a capability call (kv.get, http.fetch URL, emit TOPIC, secrets.get NAME, "
      "log.info)\nor an API action (publish, publish_unsigned, invoke_unapproved, self_approve)");
  policy_explain_command->add_option(
      "--tenant", policy_options.tenant,
      "the tenant (an auditor's token may leave it out: its own tenant)");
  policy_explain_command->add_option("action", policy_options.action, "the action, such as kv.get")
      ->required();
  policy_explain_command->callback(
      [&] { action = [&](Session& s) { return policy_explain(s, policy_options); }; });

  ScriptOptions script_options;
  auto add_script = [&](CLI::App* command) {
    command->add_option("--tenant", script_options.tenant, "the tenant")->required();
    command->add_option("--script", script_options.script, "the script's name")->required();
  };
  auto* publish_command =
      server_command(app, "publish", "Publish FILE as a new version of a script (publisher)");
  publish_command->add_option("file", script_options.file, "the Lua source")->required();
  add_script(publish_command);
  publish_command
      ->add_option("--capability", script_options.capabilities,
                   "a capability the script needs: log, kv, http, emit or secrets (repeatable)")
      ->allow_extra_args(false)
      ->delimiter(',');
  publish_command->add_flag("--deterministic", script_options.deterministic,
                            "declare that the script is deterministic");
  publish_command->add_option("--description", script_options.description, "what the script does");
  publish_command->add_option("--sign", script_options.sign_key,
                              "sign the source with this secret key file (NAME.key from corral "
                              "keygen), for tenants whose policy requires signatures");
  publish_command->callback(
      [&] { action = [&](Session& s) { return publish(s, script_options); }; });

  auto* scripts_command = server_command(app, "scripts", "List a tenant's scripts");
  scripts_command->add_option("--tenant", script_options.tenant, "the tenant")->required();
  scripts_command->callback(
      [&] { action = [&](Session& s) { return list_scripts(s, script_options.tenant); }; });

  auto* versions_command =
      server_command(app, "versions", "List a script's versions and their aliases");
  add_script(versions_command);
  versions_command->callback(
      [&] { action = [&](Session& s) { return versions(s, script_options); }; });

  auto* approve_command = server_command(app, "approve", "Approve pending VERSION (reviewer)");
  add_script(approve_command);
  approve_command->add_option("version", script_options.version, "the version number")
      ->required()
      ->check(kCountingNumber);
  approve_command->callback(
      [&] { action = [&](Session& s) { return approve(s, script_options); }; });

  auto* alias = server_command(app, "alias",
                               "Point aliases at approved versions, list them and their history");
  alias->require_subcommand(1);
  auto* alias_set_command = server_command(*alias, "set", "Point ALIAS at VERSION (reviewer)");
  add_script(alias_set_command);
  alias_set_command->add_option("alias", script_options.alias, "the alias, such as live")
      ->required();
  alias_set_command->add_option("version", script_options.version, "an approved version number")
      ->required()
      ->check(kCountingNumber);
  alias_set_command->add_flag("--auto-rollback", script_options.auto_rollback,
                              "move the alias back to the version it pointed at before (see "
                              "alias history) by itself when this one's circuit breaker "
                              "quarantines it");
  alias_set_command->callback(
      [&] { action = [&](Session& s) { return alias_set(s, script_options); }; });
  auto* alias_list_command = server_command(*alias, "list", "List a script's aliases");
  add_script(alias_list_command);
  alias_list_command->callback(
      [&] { action = [&](Session& s) { return alias_list(s, script_options); }; });
  auto* alias_history_command = server_command(
      *alias, "history", "List every change of ALIAS, newest first: who moved it, from, to");
  add_script(alias_history_command);
  alias_history_command->add_option("alias", script_options.alias, "the alias, such as live")
      ->required();
  alias_history_command->callback(
      [&] { action = [&](Session& s) { return alias_history(s, script_options); }; });
  auto* canary = server_command(
      *alias, "canary", "Send a share of an alias's invocations to another approved version");
  canary->require_subcommand(1);
  std::optional<int64_t> canary_weight;
  auto* canary_set_command = server_command(
      *canary, "set",
      "Send --weight percent of ALIAS's invocations to approved VERSION; the alias's own\n"
      "version and auto-rollback stay as they are (reviewer)");
  add_script(canary_set_command);
  canary_set_command->add_option("alias", script_options.alias, "the alias, such as live")
      ->required();
  canary_set_command->add_option("version", script_options.version, "the canary version")
      ->required()
      ->check(kCountingNumber);
  canary_set_command->add_option("--weight", canary_weight, "percent of invocations, 1 to 99")
      ->required()
      ->check(CLI::Range(1, 99));
  canary_set_command->callback(
      [&] { action = [&](Session& s) { return alias_canary(s, script_options, canary_weight); }; });
  auto* canary_clear_command = server_command(
      *canary, "clear", "End ALIAS's canary: all its invocations go to its version (reviewer)");
  add_script(canary_clear_command);
  canary_clear_command->add_option("alias", script_options.alias, "the alias, such as live")
      ->required();
  canary_clear_command->callback(
      [&] { action = [&](Session& s) { return alias_canary(s, script_options, std::nullopt); }; });

  InvokeOptions invoke_options;
  auto* invoke_command = server_command(
      app, "invoke",
      "Invoke a script (alias live by default) and print its output JSON; logs go to stderr");
  invoke_command->add_option("--tenant", invoke_options.tenant, "the tenant")->required();
  invoke_command->add_option("--script", invoke_options.script, "the script's name")->required();
  auto* alias_option = invoke_command->add_option("--alias", invoke_options.alias,
                                                  "invoke the version ALIAS points at");
  invoke_command->add_option("--version", invoke_options.version, "invoke this version number")
      ->check(kCountingNumber)
      ->excludes(alias_option);
  invoke_command->add_option("--input,-i", invoke_options.input,
                             "input JSON, or @FILE to read it from FILE (default: null)");
  invoke_command->add_flag("--stats", invoke_options.stats,
                           "also print the run's stats (to stderr)");
  invoke_command->callback([&] { action = [&](Session& s) { return invoke(s, invoke_options); }; });

  JobOptions job_options;
  auto* jobs = server_command(
      app, "jobs", "Submit asynchronous invocations, follow them, wait for, cancel them");
  jobs->require_subcommand(1);
  auto add_job_script = [&](CLI::App* command, bool with_id) {
    command->add_option("--tenant", job_options.tenant, "the tenant")->required();
    command->add_option("--script", job_options.script, "the script's name")->required();
    if (with_id) command->add_option("id", job_options.id, "the job's id")->required();
  };
  auto* jobs_submit_command = server_command(
      *jobs, "submit",
      "Submit a job (alias live by default); print its id alone on stdout, what it is on stderr");
  add_job_script(jobs_submit_command, false);
  auto* job_alias_option = jobs_submit_command->add_option("--alias", job_options.alias,
                                                           "run the version ALIAS points at now");
  jobs_submit_command->add_option("--version", job_options.version, "run this version number")
      ->check(kCountingNumber)
      ->excludes(job_alias_option);
  jobs_submit_command->add_option("--input,-i", job_options.input,
                                  "input JSON, or @FILE to read it from FILE (default: null)");
  jobs_submit_command->add_option("--callback-url", job_options.callback_url,
                                  "https URL to POST the signed result to when the job ends");
  jobs_submit_command->add_flag("--no-webhook-input", job_options.no_webhook_input,
                                "leave the input out of the webhook's body");
  jobs_submit_command->add_option(
      "--idempotency-key", job_options.idempotency_key,
      "the same key and request answer the same job (default: a new random key each time)");
  jobs_submit_command->callback(
      [&] { action = [&](Session& s) { return job_submit(s, job_options); }; });
  auto* jobs_show_command = server_command(*jobs, "show", "Show job ID: state, attempts, outcome");
  add_job_script(jobs_show_command, true);
  jobs_show_command->callback(
      [&] { action = [&](Session& s) { return job_show(s, job_options); }; });
  auto* jobs_list_command = server_command(*jobs, "list", "List a script's jobs, newest first");
  add_job_script(jobs_list_command, false);
  jobs_list_command->add_option("--before", job_options.before,
                                "the page after this job id (as printed)");
  jobs_list_command->add_option("--limit", job_options.limit, "at most N jobs (server default 50)")
      ->check(kCountingNumber);
  jobs_list_command->add_option("--state", job_options.state, "only jobs in this state")
      ->check(CLI::IsMember({"queued", "running", "succeeded", "failed", "cancelled"}));
  jobs_list_command->callback(
      [&] { action = [&](Session& s) { return job_list(s, job_options); }; });
  auto* jobs_wait_command = server_command(
      *jobs, "wait",
      "Wait until job ID ends; print its output as invoke does and exit by its outcome\n"
      "(0 ok, 1 script_error, 3 limit_exceeded, 4 invalid, 5 crashed, 6 denied, 7 rejected);\n"
      "9 if it was cancelled, 8 if it is still not done at --timeout-s");
  add_job_script(jobs_wait_command, true);
  jobs_wait_command
      ->add_option("--timeout-s", job_options.timeout_s, "give up after N seconds (default 300)")
      ->check(kCountingNumber);
  jobs_wait_command->callback(
      [&] { action = [&](Session& s) { return job_wait(s, job_options); }; });
  auto* jobs_cancel_command = server_command(
      *jobs, "cancel", "Cancel job ID (a running one ends cancelled when its run returns)");
  add_job_script(jobs_cancel_command, true);
  jobs_cancel_command->callback(
      [&] { action = [&](Session& s) { return job_cancel(s, job_options); }; });

  EventOptions event_options;
  auto* events = server_command(app, "events", "Read a tenant's outbox of emitted events");
  events->require_subcommand(1);
  auto* events_tail_command = server_command(
      *events, "tail",
      "Print the tenant's events after --after, one a line; with --follow, keep printing new ones");
  events_tail_command->add_option("--tenant", event_options.tenant, "the tenant")->required();
  events_tail_command
      ->add_option("--after", event_options.after, "events after this sequence number (default 0)")
      ->check(CLI::NonNegativeNumber);
  events_tail_command->add_flag("--follow,-f", event_options.follow,
                                "keep asking for new events until interrupted");
  events_tail_command
      ->add_option(
          "--interval-ms", event_options.interval_ms,
          "with --follow, how long to wait between asks when nothing is new (default 1000)")
      ->check(kCountingNumber);
  events_tail_command->callback(
      [&] { action = [&](Session& s) { return events_tail(s, event_options); }; });

  UsageOptions usage_options;
  auto* usage_command = server_command(
      app, "usage",
      "What TENANT's scripts used in a window, for billing: invocations, failures, CPU ms, fuel\n"
      "and jobs by script or by hour, and what it stores now (admin; the tenant's auditor,\n"
      "publisher)");
  usage_command->add_option("tenant", usage_options.tenant, "the tenant")->required();
  usage_command->add_option(
      "--from", usage_options.from,
      "from this time, rounded down to its hour: unix ms or RFC 3339 UTC (default: 24 h before "
      "--to)");
  usage_command->add_option("--to", usage_options.to,
                            "before this time: unix ms or RFC 3339 UTC (default: now)");
  usage_command->add_option("--by", usage_options.by, "a row per script (default) or per hour")
      ->check(CLI::IsMember({"script", "hour"}));
  usage_command->callback([&] { action = [&](Session& s) { return usage(s, usage_options); }; });

  SecretOptions secret_options;
  auto* secret = server_command(
      app, "secret", "Put, list and delete a tenant's secrets (admin); values are never shown");
  secret->require_subcommand(1);
  auto add_secret_tenant = [&](CLI::App* command) {
    command->add_option("--tenant", secret_options.tenant, "the tenant")->required();
  };
  auto* secret_list_command =
      server_command(*secret, "list", "List the tenant's secrets: names and update times");
  add_secret_tenant(secret_list_command);
  secret_list_command->callback(
      [&] { action = [&](Session& s) { return secret_list(s, secret_options); }; });
  auto* secret_put_command = server_command(
      *secret, "put",
      "Create or replace secret NAME with the value in --value-file (sealed at rest)");
  add_secret_tenant(secret_put_command);
  secret_put_command->add_option("name", secret_options.name, "1 to 64 of A-Z a-z 0-9 . _ -")
      ->required();
  secret_put_command
      ->add_option("--value-file", secret_options.value_file,
                   "read the value from FILE, or - for stdin (one trailing line break is "
                   "dropped); never give it on the command line")
      ->required();
  secret_put_command->callback(
      [&] { action = [&](Session& s) { return secret_put(s, secret_options); }; });
  auto* secret_delete_command = server_command(*secret, "delete", "Delete secret NAME");
  add_secret_tenant(secret_delete_command);
  secret_delete_command->add_option("name", secret_options.name, "the secret's name")->required();
  secret_delete_command->callback(
      [&] { action = [&](Session& s) { return secret_delete(s, secret_options); }; });

  RunsOptions runs_options;
  auto* runs = server_command(
      app, "runs", "List and show a script's stored runs; replay one against another version");
  runs->require_subcommand(1);
  auto add_runs_script = [&](CLI::App* command) {
    command->add_option("--tenant", runs_options.tenant, "the tenant")->required();
    command->add_option("--script", runs_options.script, "the script's name")->required();
  };
  auto* runs_list_command = server_command(
      *runs, "list", "List the script's stored runs, newest first (publisher, reviewer, auditor)");
  add_runs_script(runs_list_command);
  runs_list_command->add_option("--limit", runs_options.limit, "at most N runs (server default 20)")
      ->check(kCountingNumber);
  runs_list_command->callback(
      [&] { action = [&](Session& s) { return runs_list(s, runs_options); }; });
  auto* runs_show_command =
      server_command(*runs, "show", "Show stored run ID: version, outcome, input if kept, output");
  add_runs_script(runs_show_command);
  runs_show_command->add_option("id", runs_options.id, "the run's invocation id")->required();
  runs_show_command->callback(
      [&] { action = [&](Session& s) { return runs_show(s, runs_options); }; });
  auto* runs_replay_command = server_command(
      *runs, "replay",
      "Run stored run ID's input against --version (publisher, reviewer); print and exit as\n"
      "invoke does, and say on stderr whether outcome and output match the stored run's");
  add_runs_script(runs_replay_command);
  runs_replay_command->add_option("id", runs_options.id, "the stored run's id")->required();
  runs_replay_command->add_option("--version", runs_options.version, "the version to run it on")
      ->required()
      ->check(kCountingNumber);
  runs_replay_command->add_flag("--stats", runs_options.stats,
                                "also print the run's stats (to stderr)");
  runs_replay_command->callback(
      [&] { action = [&](Session& s) { return runs_replay(s, runs_options); }; });

  auto* version = server_command(
      app, "version", "Show one version of a script, deprecate or disable it (reviewer)");
  version->require_subcommand(1);
  auto add_version = [&](CLI::App* command) {
    add_script(command);
    command->add_option("version", script_options.version, "the version number")
        ->required()
        ->check(kCountingNumber);
  };
  auto* version_show_command = server_command(
      *version, "show", "Print VERSION's source on stdout; its state, authors, manifest on stderr");
  add_version(version_show_command);
  version_show_command->callback(
      [&] { action = [&](Session& s) { return version_show(s, script_options); }; });
  auto* version_deprecate_command =
      server_command(*version, "deprecate",
                     "Deprecate approved VERSION: still served, each answer flagged (reviewer)");
  add_version(version_deprecate_command);
  version_deprecate_command->callback(
      [&] { action = [&](Session& s) { return version_change(s, script_options, "deprecate"); }; });
  auto* version_disable_command = server_command(
      *version, "disable",
      "Disable VERSION: invoking it is refused (410) from then on; it is kept (reviewer, admin).\n"
      "There is no re-enable: publish the source again as a new version");
  add_version(version_disable_command);
  version_disable_command->callback(
      [&] { action = [&](Session& s) { return version_change(s, script_options, "disable"); }; });

  WebhookOptions webhook_options;
  auto* webhook = server_command(
      app, "webhook", "Rotate a tenant's webhook signing secret, list its webhook deliveries");
  webhook->require_subcommand(1);
  auto* webhook_secret_command = server_command(
      *webhook, "rotate-secret",
      "Create or replace the tenant's webhook signing secret and print it (only this once) on "
      "stdout (admin)");
  webhook_secret_command->add_option("--tenant", webhook_options.tenant, "the tenant")->required();
  webhook_secret_command->callback(
      [&] { action = [&](Session& s) { return webhook_rotate_secret(s, webhook_options); }; });
  auto* webhook_deliveries_command = server_command(
      *webhook, "deliveries",
      "List the tenant's webhook deliveries, newest first (admin, auditor, publisher)");
  webhook_deliveries_command->add_option("--tenant", webhook_options.tenant, "the tenant")
      ->required();
  webhook_deliveries_command
      ->add_option("--state", webhook_options.state, "only deliveries in this state")
      ->check(CLI::IsMember({"pending", "delivered", "dead"}));
  webhook_deliveries_command->add_option("--before", webhook_options.before,
                                         "the page after this delivery id (as printed)");
  webhook_deliveries_command
      ->add_option("--limit", webhook_options.limit, "at most N deliveries (server default 50)")
      ->check(kCountingNumber);
  webhook_deliveries_command->callback(
      [&] { action = [&](Session& s) { return webhook_deliveries(s, webhook_options); }; });

  AuditOptions audit_options;
  auto* audit_command =
      server_command(app, "audit", "Read the audit trail (admin, auditor); audit verify checks it");
  audit_command->require_subcommand(0, 1);
  audit_command->add_option("--tenant", audit_options.tenant, "only this tenant's entries");
  audit_command->add_option("--action", audit_options.action,
                            "only this action, such as version.approve, token.create or auth");
  audit_command->add_option("--since", audit_options.since,
                            "from this time: unix ms or RFC 3339 UTC");
  audit_command->add_option("--until", audit_options.until,
                            "before this time: unix ms or RFC 3339 UTC");
  audit_command->add_option("--after", audit_options.after, "entries after this sequence number");
  audit_command->add_option("--limit", audit_options.limit,
                            "at most this many entries (server default 100)");
  audit_command->callback([&] {
    if (!action) action = [&](Session& s) { return audit(s, audit_options); };
  });
  server_command(*audit_command, "verify", "Re-walk the audit hash chain; exit 10 if it is broken")
      ->callback([&] { action = [](Session& s) { return audit_verify(s); }; });

  // Set last, so that only the top level's help carries it.
  app.footer(kFooter);
  invoke_command->footer(
      "Exit status by the outcome, as corral run: 0 ok, 1 script_error, 3 limit_exceeded,\n"
      "4 invalid, 5 crashed, 6 denied, 7 rejected (did not run: quota, breaker, no worker);\n"
      "when the answer has no outcome: 2 usage, 20-26 refused by kind, 30 server error,\n"
      "31 unavailable, 32 cannot reach the server (corral --help, docs/cli.md).");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    int status = app.exit(error);
    return status == 0 ? 0 : 2;
  }
  if (run_command->parsed()) return run(options);
  if (keygen_command->parsed()) return keygen(key_name);
  if (!action) {
    std::cerr << "corral: no command given; see corral --help\n";
    return kUsage;
  }
  try {
    Session session(globals);
    return action(session);
  } catch (const Exit& exit) {
    return exit.status;
  } catch (const std::exception& error) {
    std::cerr << "corral: " << error.what() << "\n";
    return kServerError;
  }
}

// Runs every hostile script in tests/attacks/ through a real corral-worker and checks the
// outcome its header promises:
//   -- expect: OUTCOME [LIMIT]
//   -- limits: {"fuel": 1000}        (optional)
//   -- why: what the attack tries and what must stop it
//   -- message: TEXT                 (optional) what the run's message must contain
//
// Besides the outcome, the script's own verdict is checked. A script that can see whether its
// attack worked says so in words that start a verdict, anywhere in its error message, its
// output or a log line (print, ctx.log):
//   "escaped: WHAT"  the attack worked: WHAT got through. The test fails, whatever the outcome.
//   "held: WHAT"     the defence stopped it: WHAT stopped it.
// A script whose source can say "escaped:" and whose run is expected to end in ok or
// script_error must say "held:" (error("held: ..."), return "held: ..." or a log line): an
// error it did not mean (a typo, an engine message it did not foresee) is not a verdict, and
// the test fails. A run that ends in a limit is stopped before it can speak: the limit is the
// verdict, but anything the script logged before still counts ("escaped:" fails the test).
// A script that cannot see the result (the host refuses its output, Lua stops a runaway
// recursion) names what must stop it with a "message:" header instead.
//
// Each script runs twice: with the Lua layer alone (an unjailed worker) and fully jailed, as
// corrald runs it. The jailed pass needs every jail layer: on a machine without one it is
// skipped, naming the layer and why it is missing, never passed. After each attack a harmless
// script must still run: no attack may break the executor.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "pool/jail_setup.h"
#include "pool/process_executor.h"
#include "pool/tenant_pool.h"

namespace {

namespace fs = std::filesystem;

struct Attack {
  std::string name;
  std::string source;
  corral::Outcome outcome;
  std::optional<corral::LimitKind> limit;
  nlohmann::json limits = nlohmann::json::object();
  std::string message = "";  // what the run's message must contain, when the header says
  bool can_escape = false;   // the source can report "escaped:"
};

constexpr std::string_view kEscaped = "escaped:";
constexpr std::string_view kHeld = "held:";

std::string read_text(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

Attack parse_attack(const fs::path& path) {
  Attack attack{.name = path.stem().string(),
                .source = read_text(path),
                .outcome = corral::Outcome::ok,
                .limit = std::nullopt};
  std::istringstream lines(attack.source);
  std::string line;
  std::getline(lines, line);
  const std::string expect = "-- expect: ";
  if (!line.starts_with(expect)) {
    throw std::runtime_error(path.string() +
                             ": the first line must be '-- expect: OUTCOME [LIMIT]'");
  }
  std::istringstream words(line.substr(expect.size()));
  std::string outcome, limit;
  words >> outcome >> limit;
  auto parsed = corral::outcome_from_string(outcome);
  if (!parsed) throw std::runtime_error(path.string() + ": unknown outcome '" + outcome + "'");
  attack.outcome = *parsed;
  if (!limit.empty()) {
    attack.limit = corral::limit_from_string(limit);
    if (!attack.limit) throw std::runtime_error(path.string() + ": unknown limit '" + limit + "'");
  }
  const std::string limits = "-- limits: ", message = "-- message: ";
  while (std::getline(lines, line) && line.starts_with("-- ")) {
    if (line.starts_with(limits)) attack.limits = nlohmann::json::parse(line.substr(limits.size()));
    if (line.starts_with(message)) attack.message = line.substr(message.size());
  }
  attack.can_escape = attack.source.find(kEscaped) != std::string::npos;
  return attack;
}

std::vector<fs::path> attack_files() {
  std::vector<fs::path> files;
  for (const auto& entry :
       fs::directory_iterator(fs::path(CORRAL_SOURCE_DIR) / "tests" / "attacks")) {
    if (entry.path().extension() == ".lua") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// The Lua layer alone: an unjailed worker process, so the sandbox itself must stop each attack.
corral::Executor& lua_layer_alone() {
  static corral::ProcessExecutor instance(
      {.worker_path = CORRAL_WORKER_PATH, .max_idle_workers = 1});
  return instance;
}

// As corrald runs them: every jail layer, in a tenant-bound pool. Null, with the reason in
// `missing`, when this machine lacks a layer: that pass is then skipped, not run with less.
struct JailedPass {
  std::unique_ptr<corral::JailSetup> jail;
  std::unique_ptr<corral::TenantPool> pool;
  std::string missing;
};

JailedPass& fully_jailed() {
  static JailedPass pass = [] {
    JailedPass made;
    // Probing with every layer allowed to be missing, so that what is missing can be named.
    made.jail = std::make_unique<corral::JailSetup>(corral::JailSetup::accept_any_missing());
    for (const std::string& refusal : made.jail->refusals({})) {
      made.missing += (made.missing.empty() ? "" : "; ") + refusal;
    }
    if (!made.missing.empty()) return made;
    corral::JailSetup* jail = made.jail.get();
    made.pool =
        std::make_unique<corral::TenantPool>(corral::TenantPool::Options{.max_workers = 4,
                                                                         .warm_per_tenant = 1,
                                                                         .max_idle = 2,
                                                                         .recycle_after = 1000,
                                                                         .kill_grace_ms = 50},
                                             [jail](const std::string& tenant) {
                                               return std::make_unique<corral::WorkerProcess>(
                                                   jail->spec_for(CORRAL_WORKER_PATH, tenant));
                                             });
    return made;
  }();
  return pass;
}

corral::InvocationResult run(corral::Executor& executor, const std::string& source,
                             const nlohmann::json& limits) {
  corral::InvocationRequest request{.invocation_id = corral::new_invocation_id(),
                                    .tenant = "attacker",
                                    .source = source,
                                    .input = nlohmann::json::object(),
                                    .limits = corral::LimitsPolicy{}.resolve(limits)};
  return executor.run(request);
}

class AttackTest : public ::testing::TestWithParam<std::tuple<fs::path, bool>> {};

// Every place a script can put its verdict: the error message, the output, the log lines.
std::vector<std::string> verdict_texts(const corral::InvocationResult& result) {
  std::vector<std::string> texts{result.message};
  texts.push_back(result.output_json.empty() ? result.output.dump() : result.output_json);
  for (const auto& entry : result.logs) texts.push_back(entry.message);
  return texts;
}

bool says(const corral::InvocationResult& result, std::string_view verdict) {
  for (const std::string& text : verdict_texts(result)) {
    if (text.find(verdict) != std::string::npos) return true;
  }
  return false;
}

TEST_P(AttackTest, EndsWithItsExpectedOutcome) {
  auto [path, jailed] = GetParam();
  Attack attack = parse_attack(path);
  corral::Executor* executor = &lua_layer_alone();
  if (jailed) {
    JailedPass& pass = fully_jailed();
    if (!pass.pool) GTEST_SKIP() << "the fully jailed pass needs every layer: " << pass.missing;
    executor = pass.pool.get();
  }
  // The wall-time bound is there to stop a runaway, not part of the attack, unless the attack is
  // about limits: a loaded sanitizer build may take most of a second to start a worker.
  nlohmann::json limits = attack.limits;
  if (attack.outcome != corral::Outcome::limit_exceeded && limits.contains("timeout_ms") &&
      limits["timeout_ms"].is_number_integer() && limits["timeout_ms"].get<int64_t>() < 5000) {
    limits["timeout_ms"] = 5000;
  }
  corral::InvocationResult result = run(*executor, attack.source, limits);
  std::string shown = corral::to_json(result).dump();
  EXPECT_FALSE(says(result, kEscaped)) << "the script reports that its attack worked: " << shown;
  EXPECT_EQ(corral::to_string(result.outcome), corral::to_string(attack.outcome)) << shown;
  if (attack.limit) {
    ASSERT_TRUE(result.limit.has_value()) << shown;
    EXPECT_EQ(corral::to_string(*result.limit), corral::to_string(*attack.limit)) << shown;
    EXPECT_GT(result.used, 0) << shown;
    EXPECT_GT(result.allowed, 0) << shown;
  }
  if (attack.can_escape &&
      (attack.outcome == corral::Outcome::ok || attack.outcome == corral::Outcome::script_error)) {
    EXPECT_TRUE(says(result, kHeld)) << "the script gave no verdict ('held: ...'): " << shown;
  }

  corral::InvocationResult after =
      run(*executor, "function handle(input) return 'still serving' end", {});
  EXPECT_EQ(after.outcome, corral::Outcome::ok) << corral::to_json(after).dump();
  EXPECT_EQ(after.output, "still serving");
}

TEST(AttackSuite, HoldsAtLeastThirtyScripts) { EXPECT_GE(attack_files().size(), 30u); }

INSTANTIATE_TEST_SUITE_P(Scripts, AttackTest,
                         ::testing::Combine(::testing::ValuesIn(attack_files()), ::testing::Bool()),
                         [](const ::testing::TestParamInfo<std::tuple<fs::path, bool>>& info) {
                           std::string name =
                               std::get<0>(info.param).stem().string() +
                               (std::get<1>(info.param) ? "_jailed" : "_lua_layer_alone");
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

}  // namespace

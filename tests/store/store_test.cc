// The SQLite store through its abstract interface, on real files: tenants, tokens, versions,
// aliases and audit appends; that data outlives the store object; and that concurrent publishers
// get distinct, contiguous version numbers.
#include "store/store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <set>
#include <thread>

#include "store/sqlite_fixture.h"
#include "store/sqlite_store.h"
#include "support/store_under_test.h"

namespace {

using namespace corral::store;
using corral::testing::RawDb;
using corral::testing::TempDir;

class StoreTest : public ::testing::Test {
 protected:
  std::filesystem::path data_dir() const { return dir_.path() / "data"; }
  std::filesystem::path db_file() const { return data_dir() / "corral.db"; }
  Store& store() {
    if (!store_) store_ = corral::testing::open_store_under_test(data_dir());
    return *store_;
  }
  void reopen() {
    store_.reset();
    store_ = corral::testing::open_store_under_test(data_dir());
  }

  Tenant make_tenant(std::string name = "acme") { return store().create_tenant(name, 1000); }

  Published publish(const Tenant& tenant, std::string_view script, std::string_view source,
                    int64_t at = 2000) {
    // The store keeps whatever hash it is given; a stand-in unique to the source is enough here,
    // in hex as a real hash is (a source may hold any bytes; a hash never does).
    std::string stand_in = "sha-of:";
    for (unsigned char c : source) {
      stand_in += "0123456789abcdef"[c >> 4];
      stand_in += "0123456789abcdef"[c & 0xf];
    }
    return store().insert_version(tenant.id, script, stand_in, source, R"({"runtime":"lua5.4"})",
                                  "tok-publisher", at);
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
};

bool is_hex_id(const std::string& id) {
  return id.size() == 32 && id.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// ---- tenants

TEST_F(StoreTest, CreatesAndFindsTenants) {
  Tenant acme = store().create_tenant("acme", 1234);
  EXPECT_TRUE(is_hex_id(acme.id)) << acme.id;
  EXPECT_EQ(acme.name, "acme");
  EXPECT_EQ(acme.created_at, 1234);

  auto by_id = store().find_tenant(acme.id);
  ASSERT_TRUE(by_id);
  EXPECT_EQ(by_id->name, "acme");
  EXPECT_EQ(by_id->created_at, 1234);
  auto by_name = store().find_tenant_by_name("acme");
  ASSERT_TRUE(by_name);
  EXPECT_EQ(by_name->id, acme.id);

  EXPECT_FALSE(store().find_tenant("nope"));
  EXPECT_FALSE(store().find_tenant_by_name("ACME"));
}

TEST_F(StoreTest, DuplicateTenantNameIsAConflict) {
  make_tenant("acme");
  try {
    store().create_tenant("acme", 2000);
    FAIL() << "a second tenant named acme was created";
  } catch (const Conflict& error) {
    EXPECT_NE(std::string(error.what()).find("\"acme\""), std::string::npos) << error.what();
  }
  EXPECT_EQ(store().list_tenants().size(), 1u);
}

TEST_F(StoreTest, ListsTenantsByName) {
  Tenant zeta = make_tenant("zeta");
  Tenant alpha = make_tenant("alpha");
  Tenant mid = make_tenant("mid");
  auto tenants = store().list_tenants();
  ASSERT_EQ(tenants.size(), 3u);
  EXPECT_EQ(tenants[0].id, alpha.id);
  EXPECT_EQ(tenants[1].id, mid.id);
  EXPECT_EQ(tenants[2].id, zeta.id);
  EXPECT_NE(alpha.id, zeta.id);
}

TEST_F(StoreTest, NamesAreDataNotSql) {
  std::string name = "x'); DROP TABLE tenants; --";
  Tenant odd = store().create_tenant(name, 1);
  EXPECT_EQ(store().find_tenant_by_name(name)->id, odd.id);
  EXPECT_EQ(store().list_tenants().size(), 1u);
}

// ---- tokens

TEST_F(StoreTest, InsertsFindsAndRevokesTokens) {
  Tenant acme = make_tenant();
  Token token = store().insert_token(
      TokenDraft{acme.id, "publisher", std::string(64, 'a'), 5000, 9000, "bootstrap"});
  EXPECT_TRUE(is_hex_id(token.id)) << token.id;
  EXPECT_FALSE(token.revoked_at);

  auto found = store().find_token_by_hash(std::string(64, 'a'));
  ASSERT_TRUE(found);
  EXPECT_EQ(found->id, token.id);
  EXPECT_EQ(found->tenant_id, acme.id);
  EXPECT_EQ(found->role, "publisher");
  EXPECT_EQ(found->created_at, 5000);
  EXPECT_EQ(found->expires_at, 9000);
  EXPECT_FALSE(found->revoked_at);
  EXPECT_EQ(found->created_by, "bootstrap");
  EXPECT_FALSE(store().find_token_by_hash(std::string(64, 'b')));

  Token revoked = store().revoke_token(token.id, 7000);
  EXPECT_EQ(revoked.revoked_at, 7000);
  EXPECT_EQ(store().find_token(token.id)->revoked_at, 7000);
  // Revoking again does not move the time of revocation.
  EXPECT_EQ(store().revoke_token(token.id, 8000).revoked_at, 7000);
  // What other nodes read to drop it from their caches.
  EXPECT_EQ(store().tokens_revoked_since(7000), std::vector<std::string>{token.id});
  EXPECT_TRUE(store().tokens_revoked_since(7001).empty());

  EXPECT_THROW(store().revoke_token("nope", 1), NotFound);
}

TEST_F(StoreTest, AdminTokensBelongToNoTenant) {
  EXPECT_EQ(store().count_tokens(), 0);
  Token admin = store().insert_token(
      TokenDraft{"", "admin", std::string(64, 'c'), 1, std::nullopt, "bootstrap"});
  EXPECT_EQ(store().count_tokens(), 1);
  auto found = store().find_token(admin.id);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->tenant_id, "");
  EXPECT_FALSE(found->expires_at);
}

TEST_F(StoreTest, ListsATenantsTokensOrTheAdminTokensAndWhenEachWasLastUsed) {
  Tenant acme = make_tenant();
  Token admin = store().insert_token(TokenDraft{"", "admin", "h0", 1, std::nullopt, "bootstrap"});
  Token alice = store().insert_token(TokenDraft{acme.id, "publisher", "h1", 2, {}, "x", "alice"});
  Token bob = store().insert_token(TokenDraft{acme.id, "reviewer", "h2", 3, {}, "x", "bob"});
  store().note_token_used(alice.id, 5000);
  store().note_token_used("no-such-token", 6000);  // changes nothing

  std::vector<Token> tokens = store().list_tokens(acme.id);
  ASSERT_EQ(tokens.size(), 2u);
  EXPECT_EQ(tokens[0].id, alice.id);
  EXPECT_EQ(tokens[0].subject, "alice");
  EXPECT_EQ(tokens[0].last_used_at, 5000);
  EXPECT_EQ(tokens[1].id, bob.id);
  EXPECT_FALSE(tokens[1].last_used_at);
  EXPECT_EQ(store().find_token_by_hash("h1")->last_used_at, 5000);

  std::vector<Token> admins = store().list_tokens("");
  ASSERT_EQ(admins.size(), 1u);
  EXPECT_EQ(admins[0].id, admin.id);
}

TEST_F(StoreTest, TokenRulesAreEnforced) {
  EXPECT_THROW(store().insert_token(TokenDraft{"no-such-tenant", "invoker", "h1", 1, {}, "x"}),
               NotFound);
  Tenant acme = make_tenant();
  store().insert_token(TokenDraft{acme.id, "invoker", "h1", 1, {}, "x"});
  EXPECT_THROW(store().insert_token(TokenDraft{acme.id, "auditor", "h1", 1, {}, "x"}), Conflict);
  EXPECT_EQ(store().count_tokens(), 1);
}

// ---- script versions

TEST_F(StoreTest, NumbersVersionsOneTwoThree) {
  Tenant acme = make_tenant();
  for (int64_t expected = 1; expected <= 3; ++expected) {
    Published published = publish(acme, "greet", "return " + std::to_string(expected));
    EXPECT_TRUE(published.created);
    EXPECT_EQ(published.version.version, expected);
    EXPECT_EQ(published.version.state, VersionState::pending);
    EXPECT_FALSE(published.version.approved_by);
  }
  auto versions = store().list_versions(acme.id, "greet");
  ASSERT_EQ(versions.size(), 3u);
  for (size_t i = 0; i < versions.size(); ++i) {
    EXPECT_EQ(versions[i].version, static_cast<int64_t>(i + 1));
    EXPECT_EQ(versions[i].source, "return " + std::to_string(i + 1));
    EXPECT_EQ(versions[i].manifest, R"({"runtime":"lua5.4"})");
    EXPECT_EQ(versions[i].published_by, "tok-publisher");
  }
}

TEST_F(StoreTest, RepublishingTheSameSourceReturnsTheExistingVersion) {
  Tenant acme = make_tenant();
  publish(acme, "greet", "a");
  Published second = publish(acme, "greet", "b", 3000);
  Published again = publish(acme, "greet", "a", 9999);
  EXPECT_FALSE(again.created);
  EXPECT_EQ(again.version.version, 1);
  EXPECT_EQ(again.version.published_at, 2000);
  EXPECT_EQ(publish(acme, "greet", "b").version.version, second.version.version);
  EXPECT_EQ(store().list_versions(acme.id, "greet").size(), 2u);
  EXPECT_EQ(publish(acme, "greet", "c").version.version, 3);
}

TEST_F(StoreTest, NumberingIsPerTenantAndScript) {
  Tenant acme = make_tenant("acme");
  Tenant globex = make_tenant("globex");
  publish(acme, "one", "x");
  publish(acme, "one", "y");
  EXPECT_EQ(publish(acme, "two", "x").version.version, 1);  // same source, other script
  EXPECT_EQ(publish(globex, "one", "x").version.version, 1);
  EXPECT_EQ(publish(acme, "one", "z").version.version, 3);

  auto scripts = store().list_scripts(acme.id);
  ASSERT_EQ(scripts.size(), 2u);
  EXPECT_EQ(scripts[0].name, "one");
  EXPECT_EQ(scripts[0].latest_version, 3);
  EXPECT_EQ(scripts[1].name, "two");
  EXPECT_EQ(scripts[1].latest_version, 1);
  EXPECT_EQ(store().list_scripts(globex.id).size(), 1u);
  EXPECT_TRUE(store().list_scripts("nobody").empty());
}

TEST_F(StoreTest, PublishingForAnUnknownTenantIsNotFound) {
  EXPECT_THROW(store().insert_version("ghost", "s", "h", "src", "{}", "p", 1), NotFound);
}

TEST_F(StoreTest, SourcesKeepEveryByte) {
  Tenant acme = make_tenant();
  std::string source = std::string("a\0b", 3) + "é\n\xF0\x9F\x90\x84";
  publish(acme, "bytes", source);
  EXPECT_EQ(store().find_version(acme.id, "bytes", 1)->source, source);
}

TEST_F(StoreTest, VersionStatesAndApproval) {
  Tenant acme = make_tenant();
  publish(acme, "greet", "a");

  ScriptVersion approved =
      store().set_version_state(acme.id, "greet", 1, VersionState::approved, "tok-reviewer", 4000);
  EXPECT_EQ(approved.state, VersionState::approved);
  EXPECT_EQ(approved.approved_by, "tok-reviewer");
  EXPECT_EQ(approved.approved_at, 4000);

  ScriptVersion deprecated =
      store().set_version_state(acme.id, "greet", 1, VersionState::deprecated, "tok-admin", 5000);
  EXPECT_EQ(deprecated.state, VersionState::deprecated);
  EXPECT_EQ(deprecated.approved_by, "tok-reviewer");  // approval history is kept

  store().set_version_state(acme.id, "greet", 1, VersionState::disabled, "tok-admin", 6000);
  auto found = store().find_version(acme.id, "greet", 1);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->state, VersionState::disabled);
  EXPECT_EQ(found->approved_at, 4000);

  EXPECT_THROW(store().set_version_state(acme.id, "greet", 2, VersionState::approved, "r", 1),
               NotFound);
  EXPECT_FALSE(store().find_version(acme.id, "greet", 2));
}

TEST_F(StoreTest, VersionStateNames) {
  for (auto state : {VersionState::pending, VersionState::approved, VersionState::deprecated,
                     VersionState::disabled}) {
    EXPECT_EQ(parse_version_state(to_string(state)), state);
  }
  EXPECT_EQ(to_string(VersionState::deprecated), "deprecated");
  EXPECT_FALSE(parse_version_state("Approved"));
}

// ---- aliases

TEST_F(StoreTest, AliasesAreUpserted) {
  Tenant acme = make_tenant();
  publish(acme, "greet", "a");
  publish(acme, "greet", "b");

  Alias live = store().put_alias(acme.id, "greet", "live", 2, "tok-1", 100);
  EXPECT_EQ(live.version, 2);
  store().put_alias(acme.id, "greet", "canary", 2, "tok-1", 110);
  // Rolling back is moving the alias.
  store().put_alias(acme.id, "greet", "live", 1, "tok-2", 120);

  auto found = store().find_alias(acme.id, "greet", "live");
  ASSERT_TRUE(found);
  EXPECT_EQ(found->version, 1);
  EXPECT_EQ(found->updated_by, "tok-2");
  EXPECT_EQ(found->updated_at, 120);

  auto aliases = store().list_aliases(acme.id, "greet");
  ASSERT_EQ(aliases.size(), 2u);
  EXPECT_EQ(aliases[0].name, "canary");
  EXPECT_EQ(aliases[1].name, "live");
  EXPECT_FALSE(store().find_alias(acme.id, "greet", "beta"));
  EXPECT_TRUE(store().list_aliases(acme.id, "other").empty());
}

TEST_F(StoreTest, AliasToAMissingVersionIsNotFound) {
  Tenant acme = make_tenant();
  publish(acme, "greet", "a");
  EXPECT_THROW(store().put_alias(acme.id, "greet", "live", 7, "t", 1), NotFound);
  EXPECT_THROW(store().put_alias(acme.id, "other", "live", 1, "t", 1), NotFound);
  EXPECT_FALSE(store().find_alias(acme.id, "greet", "live"));
}

// ---- audit appends (the chain's meaning is the audit library's; here only the mechanics)

std::string fake_hash(const AuditEntry& entry) {
  return "h" + std::to_string(entry.seq) + "<" + entry.prev_hash;
}

AuditDraft draft(int64_t time, std::string tenant, std::string action) {
  return AuditDraft{time, "tok", std::move(tenant), std::move(action), "target", "allow", ""};
}

TEST_F(StoreTest, AuditAppendsChainSeqAndPrevHash) {
  EXPECT_FALSE(store().last_audit_entry());
  AuditEntry first = store().append_audit(draft(1, "a", "x"), "G", fake_hash);
  AuditEntry second = store().append_audit(draft(2, "b", "y"), "G", fake_hash);
  EXPECT_EQ(first.seq, 1);
  EXPECT_EQ(first.prev_hash, "G");
  EXPECT_EQ(first.hash, "h1<G");
  EXPECT_EQ(second.seq, 2);
  EXPECT_EQ(second.prev_hash, "h1<G");
  EXPECT_EQ(store().last_audit_entry()->hash, "h2<h1<G");
}

TEST_F(StoreTest, AuditAppendIsAllOrNothing) {
  store().append_audit(draft(1, "a", "x"), "G", fake_hash);
  auto failing = [](const AuditEntry&) -> std::string { throw std::runtime_error("no hash"); };
  EXPECT_THROW(store().append_audit(draft(2, "a", "x"), "G", failing), std::runtime_error);
  EXPECT_EQ(store().append_audit(draft(3, "a", "x"), "G", fake_hash).seq, 2);
  EXPECT_THROW(store().append_audit(AuditDraft{4, "t", "", "a", "t", "maybe", ""}, "G", fake_hash),
               std::invalid_argument);
  EXPECT_EQ(store().last_audit_entry()->seq, 2);
}

TEST_F(StoreTest, AuditReadsFilterAndPage) {
  store().append_audit(draft(10, "a", "tenant.create"), "G", fake_hash);
  store().append_audit(draft(20, "b", "tenant.create"), "G", fake_hash);
  store().append_audit(draft(30, "a", "script.publish"), "G", fake_hash);
  store().append_audit(draft(40, "a", "tenant.create"), "G", fake_hash);

  auto seqs = [this](AuditFilter filter) {
    std::vector<int64_t> result;
    for (const auto& entry : store().read_audit(filter)) result.push_back(entry.seq);
    return result;
  };
  using V = std::vector<int64_t>;
  EXPECT_EQ(seqs({}), (V{1, 2, 3, 4}));
  EXPECT_EQ(seqs({.tenant = "a"}), (V{1, 3, 4}));
  EXPECT_EQ(seqs({.tenant = "a", .action = "tenant.create"}), (V{1, 4}));
  EXPECT_EQ(seqs({.since_ms = 20, .until_ms = 40}), (V{2, 3}));
  EXPECT_EQ(seqs({.after_seq = 1, .limit = 2}), (V{2, 3}));
  EXPECT_EQ(seqs({.tenant = ""}), V{});
  EXPECT_THROW(store().read_audit({.limit = 0}), std::invalid_argument);
}

// ---- durability

TEST_F(StoreTest, DataSurvivesReopening) {
  Tenant acme = make_tenant();
  Token token = store().insert_token(TokenDraft{acme.id, "reviewer", "hash-1", 1, {}, "bootstrap"});
  store().revoke_token(token.id, 50);
  publish(acme, "greet", "a");
  publish(acme, "greet", "b");
  store().set_version_state(acme.id, "greet", 2, VersionState::approved, "tok-r", 60);
  store().put_alias(acme.id, "greet", "live", 2, "tok-r", 70);
  store().append_audit(draft(80, acme.id, "alias.put"), "G", fake_hash);

  reopen();

  EXPECT_EQ(store().find_tenant_by_name("acme")->id, acme.id);
  EXPECT_EQ(store().find_token_by_hash("hash-1")->revoked_at, 50);
  EXPECT_EQ(store().find_version(acme.id, "greet", 2)->state, VersionState::approved);
  EXPECT_EQ(store().find_alias(acme.id, "greet", "live")->version, 2);
  EXPECT_EQ(store().last_audit_entry()->hash, "h1<G");
  EXPECT_EQ(publish(acme, "greet", "c").version.version, 3);
}

TEST_F(StoreTest, CreatesAPrivateDataDirectoryAndUsesWal) {
  SKIP_UNLESS_SQLITE("the data directory's file");
  store();
  struct stat info {};
  ASSERT_EQ(stat(data_dir().c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0700u);
  corral::testing::RawSql raw(data_dir());
  EXPECT_EQ(raw.text("PRAGMA journal_mode"), "wal");
}

TEST_F(StoreTest, AFileThatIsNotADatabaseIsRefused) {
  SKIP_UNLESS_SQLITE("the data directory's file");
  std::filesystem::create_directories(data_dir());
  std::ofstream(db_file()) << std::string(4096, 'x');
  try {
    corral::testing::open_store_under_test(data_dir());
    FAIL() << "a file of junk was opened as a store";
  } catch (const StoreError& error) {
    std::string message = error.what();
    EXPECT_NE(message.find(db_file().string()), std::string::npos) << message;
    EXPECT_NE(message.find("backup"), std::string::npos) << message;
  }
}

// ---- concurrency

void expect_contiguous(const std::vector<ScriptVersion>& versions, size_t count) {
  ASSERT_EQ(versions.size(), count);
  std::set<std::string> sources;
  for (size_t i = 0; i < versions.size(); ++i) {
    EXPECT_EQ(versions[i].version, static_cast<int64_t>(i + 1));
    sources.insert(versions[i].source);
  }
  EXPECT_EQ(sources.size(), count);
}

TEST_F(StoreTest, ConcurrentPublishersThroughOneStoreGetContiguousNumbers) {
  Tenant acme = make_tenant();
  constexpr int kThreads = 4, kEach = 25;
  std::vector<std::vector<int64_t>> numbers(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        std::string source = "thread " + std::to_string(t) + " #" + std::to_string(i);
        numbers[t].push_back(publish(acme, "hot", source).version.version);
      }
    });
  }
  for (auto& thread : threads) thread.join();

  std::set<int64_t> all;
  for (const auto& list : numbers) all.insert(list.begin(), list.end());
  EXPECT_EQ(all.size(), size_t{kThreads * kEach});
  EXPECT_EQ(*all.begin(), 1);
  EXPECT_EQ(*all.rbegin(), kThreads * kEach);
  expect_contiguous(store().list_versions(acme.id, "hot"), kThreads * kEach);
}

// Separate stores on one file stand for separate processes: only SQLite's locking keeps them apart.
TEST_F(StoreTest, ConcurrentPublishersThroughSeparateConnectionsGetContiguousNumbers) {
  Tenant acme = make_tenant();
  constexpr int kThreads = 4, kEach = 10;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto own = corral::testing::open_store_under_test(data_dir());
      for (int i = 0; i < kEach; ++i) {
        std::string source = "conn " + std::to_string(t) + " #" + std::to_string(i);
        own->insert_version(acme.id, "hot", "sha-of:" + source, source, "{}", "p", 1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  expect_contiguous(store().list_versions(acme.id, "hot"), kThreads * kEach);
}

// A change and its audit entry commit together: when the work throws after the change, neither
// is kept, and the store goes on working.
TEST_F(StoreTest, AtomicallyKeepsAllOrNothing) {
  auto hasher = [](const AuditEntry& entry) { return "h" + std::to_string(entry.seq); };
  AuditDraft draft{.time_ms = 1,
                   .principal = "p",
                   .tenant = "acme",
                   .action = "tenant.create",
                   .target = "t",
                   .decision = "allow",
                   .reason = "r"};
  EXPECT_THROW(store().atomically([&] {
    store().create_tenant("lost", 1);
    store().append_audit(draft, "g", hasher);
    throw std::runtime_error("crash between steps");
  }),
               std::runtime_error);
  EXPECT_FALSE(store().find_tenant_by_name("lost"));
  EXPECT_FALSE(store().last_audit_entry());

  store().atomically([&] {
    store().create_tenant("kept", 1);
    store().append_audit(draft, "g", hasher);
  });
  EXPECT_TRUE(store().find_tenant_by_name("kept"));
  ASSERT_TRUE(store().last_audit_entry());
  EXPECT_EQ(store().last_audit_entry()->seq, 1);
}

// ---- a job's input (issue 26): dropped by the store on every path to a final state unless the job
// keeps it; the run in progress still has it.

TEST_F(StoreTest, AJobsInputIsDroppedOnEveryWayItEndsUnlessKept) {
  Tenant acme = make_tenant();
  publish(acme, "s", "a");
  auto submit = [&](const std::string& key, bool keep) {
    JobDraft draft{.tenant_id = acme.id,
                   .script = "s",
                   .version = 1,
                   .idempotency_key = key,
                   .request_sha256 = "hash",
                   .input = R"({"email":"ada@example.com"})",
                   .max_attempts = 1,
                   .created_by = "tok",
                   .created_at = 10,
                   .keep_input = keep};
    return store().submit_job(draft, 100).job;
  };
  // Finished with a result.
  Job finished = submit("finish", false);
  ASSERT_EQ(store().claim_job(20, "node-a", 30'000)->input, finished.input);
  ASSERT_TRUE(store().finish_job({.id = finished.id,
                                  .lease_token = 1,
                                  .state = JobState::succeeded,
                                  .outcome = "ok",
                                  .status = 200,
                                  .result = "{}",
                                  .at = 21}));
  EXPECT_TRUE(store().find_job(acme.id, finished.id)->input_dropped());
  // Cancelled while queued.
  Job cancelled = submit("cancel", false);
  EXPECT_EQ(store().cancel_job(acme.id, cancelled.id, 30, nullptr), CancelOutcome::cancelled);
  EXPECT_TRUE(store().find_job(acme.id, cancelled.id)->input_dropped());
  // Failed on recovery, its last attempt interrupted by a stop of corrald (past its lease, which a
  // shared store waits for).
  Job interrupted = submit("recover", false);
  ASSERT_EQ(store().claim_job(40, "node-a", 30'000)->id, interrupted.id);
  store().recover_jobs(40 + 30'000 + 1);
  Job recovered = *store().find_job(acme.id, interrupted.id);
  EXPECT_EQ(recovered.state, JobState::failed);
  EXPECT_TRUE(recovered.input_dropped());
  // Kept when the job says so, and across a reopen.
  Job kept = submit("kept", true);
  EXPECT_EQ(store().cancel_job(acme.id, kept.id, 50, nullptr), CancelOutcome::cancelled);
  reopen();
  EXPECT_EQ(store().find_job(acme.id, kept.id)->input, R"({"email":"ada@example.com"})");
  EXPECT_TRUE(store().find_job(acme.id, finished.id)->input_dropped());
}

}  // namespace

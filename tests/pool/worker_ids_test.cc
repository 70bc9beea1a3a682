// The host ids workers run as (pool/jail_setup.h): one per tenant with live workers, never two
// tenants on one id, an id reused only once nobody holds it and every fresher id is used, and a
// range refused at start when a user, a group or another user's subordinate ids are in it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "pool/jail_setup.h"
#include "pool/tenant_pool.h"
#include "pool/worker_process.h"

namespace corral {
namespace {

namespace fs = std::filesystem;

TEST(WorkerIdRange, ParsesStartAndCount) {
  WorkerIdRange range = WorkerIdRange::parse("200000:1000");
  EXPECT_EQ(range.first, 200000u);
  EXPECT_EQ(range.count, 1000u);
  EXPECT_EQ(range.to_string(), "200000:1000");
  EXPECT_EQ(WorkerIdRange::parse(WorkerIdRange{}.to_string()).first, WorkerIdRange::kDefaultFirst);
  for (const char* bad :
       {"", "200000", "200000:", ":10", "a:10", "10:b", "-1:10", "1:2:3", "99999999999:1"}) {
    try {
      WorkerIdRange::parse(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const std::invalid_argument& error) {
      EXPECT_NE(std::string(error.what()).find("--worker-id-range needs START:COUNT"),
                std::string::npos)
          << error.what();
    }
  }
}

class WorkerIdRangeProblems : public ::testing::Test {
 protected:
  void SetUp() override {
    etc_ = fs::temp_directory_path() / ("corral-ids-etc-" + std::to_string(getpid()));
    fs::create_directories(etc_);
    write("passwd", "root:x:0:0:root:/root:/bin/sh\nalice:x:300000:300000::/home/alice:/bin/sh\n");
    write("group", "root:x:0:\nbuilders:x:310000:alice\n");
    // corrald's own subordinate ids (it runs as root here) may be used; another user's may not.
    write("subuid", "root:400000:65536\nalice:500000:65536\n");
    write("subgid", "alice:600000:65536\n");
  }
  void TearDown() override { fs::remove_all(etc_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(etc_ / name) << text;
  }
  std::vector<std::string> problems(const std::string& range, size_t max_workers = 0) {
    return worker_id_range_problems(WorkerIdRange::parse(range), max_workers, etc_.string());
  }
  static void expect_one(const std::vector<std::string>& found, const std::string& part) {
    ASSERT_EQ(found.size(), 1u) << testing::PrintToString(found);
    EXPECT_NE(found[0].find(part), std::string::npos) << found[0];
  }
  fs::path etc_;
};

TEST_F(WorkerIdRangeProblems, AFreeRangeHasNone) {
  EXPECT_TRUE(problems("700000:65536", 64).empty())
      << testing::PrintToString(problems("700000:65536"));
  if (geteuid() == 0) {
    EXPECT_TRUE(problems("400000:1000").empty());  // root's own subordinate ids
  }
}

TEST_F(WorkerIdRangeProblems, EachConflictIsNamedWithItsSource) {
  expect_one(problems("299990:20"), "uid 300000 of user 'alice' (" + etc_.string() + "/passwd)");
  expect_one(problems("309990:20"), "gid 310000 of group 'builders'");
  expect_one(problems("565535:10"), "subordinate ids of 'alice' (" + etc_.string() + "/subuid");
  expect_one(problems("599999:2"), "subordinate ids of 'alice' (" + etc_.string() + "/subgid");
  expect_one(problems("700000:10", 64), "fewer ids than --max-workers (64)");
  expect_one(problems("700000:0"), "holds no id");
  expect_one(problems("2147483000:1000"), "reaches past 2147483647");
  auto root = problems("0:1");
  ASSERT_FALSE(root.empty());
  EXPECT_NE(root[0].find("root's id"), std::string::npos) << root[0];
}

TEST(WorkerIds, OneIdPerTenantNeverShared) {
  WorkerIds ids(WorkerIdRange{1000000, 4});
  auto a1 = ids.lease("a"), a2 = ids.lease("a"), b = ids.lease("b");
  EXPECT_EQ(a1->uid, a2->uid);
  EXPECT_EQ(a1->gid, a1->uid);
  EXPECT_NE(a1->uid, b->uid);
  // A spare has an id of its own, which no tenant shares.
  auto spare = ids.lease("");
  EXPECT_NE(spare->uid, a1->uid);
  EXPECT_NE(spare->uid, b->uid);
  EXPECT_EQ(ids.held(), 3u);
  for (auto* lease : {&a1, &a2, &b, &spare}) {
    EXPECT_GE((*lease)->uid, 1000000u);
    EXPECT_LT((*lease)->uid, 1000004u);
  }
}

TEST(WorkerIds, AnIdIsFreedWithItsLastWorkerAndReusedLast) {
  WorkerIds ids(WorkerIdRange{1000000, 3});
  auto a1 = ids.lease("a");
  uid_t a = a1->uid;
  auto a2 = ids.lease("a");
  a1.reset();
  // A worker of a still lives: the id stays a's, and c gets another.
  auto c = ids.lease("c");
  EXPECT_NE(c->uid, a);
  EXPECT_EQ(ids.lease("a")->uid, a);
  a2.reset();
  EXPECT_EQ(ids.held(), 1u);
  // a's id is free now, but the range's unused id goes first.
  auto d = ids.lease("d");
  EXPECT_NE(d->uid, a);
  EXPECT_NE(d->uid, c->uid);
  auto e = ids.lease("e");
  EXPECT_EQ(e->uid, a);
}

TEST(WorkerIds, AnExhaustedRangeIsRefusedClearly) {
  WorkerIds ids(WorkerIdRange{1000000, 2});
  auto a = ids.lease("a"), spare = ids.lease("");
  try {
    ids.lease("b");
    ADD_FAILURE() << "a third id was handed out of a range of two";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("all 2 ids of --worker-id-range 1000000:2"),
              std::string::npos)
        << error.what();
  }
  EXPECT_EQ(ids.lease("a")->uid, a->uid);  // a tenant with an id still gets it
  spare.reset();
  EXPECT_NO_THROW(ids.lease("b"));
}

TEST(WorkerIds, LeasesMayOutliveTheAllocator) {
  WorkerIds::Lease kept;
  {
    WorkerIds ids(WorkerIdRange{1000000, 2});
    kept = ids.lease("a");
  }
  EXPECT_EQ(kept->uid, 1000000u);
  kept.reset();  // must not touch freed memory (the sanitizer pass would say)
}

// corrald's jail gives each tenant's workers the tenant's id, and a spare one of its own.
TEST(JailSetupIds, EachTenantsWorkersGetTheirOwnIds) {
  JailSetup::Options options = JailSetup::accept_any_missing();
  options.worker_ids = WorkerIdRange::parse("1000000:8");
  JailSetup jail(options);
  if (!jail.active().has(jail::Layer::namespaces))
    GTEST_SKIP() << "no user namespaces on this machine: workers run as corrald";
  WorkerSpec a = jail.spec_for("corral-worker", "a"), a_again = jail.spec_for("corral-worker", "a");
  WorkerSpec b = jail.spec_for("corral-worker", "b"), spare = jail.spec_for("corral-worker", "");
  EXPECT_EQ(a.outside_uid, a_again.outside_uid);
  EXPECT_NE(a.outside_uid, b.outside_uid);
  EXPECT_NE(spare.outside_uid, a.outside_uid);
  EXPECT_NE(spare.outside_uid, b.outside_uid);
  EXPECT_EQ(b.outside_gid, b.outside_uid);
  EXPECT_GE(a.outside_uid, 1000000u);
  EXPECT_EQ(jail.worker_ids().held(), 3u);
}

// The host uid of each live child of this process (the pool's workers), from /proc.
std::multiset<uid_t> children_uids() {
  std::multiset<uid_t> uids;
  std::string self = std::to_string(getpid());
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::ifstream status(entry.path() / "status");
    std::string line, parent;
    uid_t uid = 0;
    while (std::getline(status, line)) {
      if (line.starts_with("PPid:")) parent = line.substr(line.find_first_not_of(" \t", 5));
      if (line.starts_with("Uid:")) uid = static_cast<uid_t>(std::stoul(line.substr(4)));
    }
    if (parent == self) uids.insert(uid);
  }
  return uids;
}

// Through the pool as corrald builds it: workers of two tenants, and a second worker of one of
// them, run as two host uids of the range, the tenant's workers on one.
TEST(JailSetupIds, ThePoolRunsEachTenantsWorkersAsTheirOwnUid) {
  JailSetup::Options options = JailSetup::accept_any_missing();
  options.worker_ids = WorkerIdRange::parse("1000000:8");
  JailSetup jail(options);
  if (!jail.active().has(jail::Layer::namespaces))
    GTEST_SKIP() << "no user namespaces on this machine: workers run as corrald";
  ASSERT_TRUE(children_uids().empty()) << "the test must start with no child process";
  {
    TenantPool pool(
        {.max_workers = 4, .warm_per_tenant = 0, .max_idle = 4, .start_timeout_ms = 30'000},
        [&](const std::string& tenant) {
          return std::make_unique<WorkerProcess>(jail.spec_for(CORRAL_WORKER_PATH, tenant));
        });
    auto run = [&](const std::string& tenant, const std::string& source) {
      InvocationRequest request;
      request.invocation_id = new_invocation_id();
      request.tenant = tenant;
      request.source = source;
      request.input = nlohmann::json::object();
      // Wide enough for a worker to start on a loaded machine under the sanitizers: what is
      // tested is whose uid the workers run as, not how fast they start.
      request.limits = LimitsPolicy{}.resolve(nlohmann::json{{"timeout_ms", 30'000}});
      return pool.run(request);
    };
    auto expect_ok = [](const InvocationResult& result) {
      EXPECT_EQ(result.outcome, Outcome::ok) << result.message;
    };
    // Two runs of a at once need two workers of a: the second starts only once the first holds
    // its worker (a sleep instead let a loaded machine start the second first, and then the
    // first took the worker the second had left idle).
    std::thread slow([&] {
      expect_ok(run("a",
                    "function handle() local t = os.clock() while os.clock() - t < 1 do "
                    "end end"));
    });
    auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (pool.stats().busy == 0 && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(pool.stats().busy, 1u) << "the slow run never got its worker";
    expect_ok(run("a", "function handle() return 1 end"));
    slow.join();
    expect_ok(run("b", "function handle() return 1 end"));
    std::multiset<uid_t> uids = children_uids();
    ASSERT_EQ(uids.size(), 3u) << "three idle workers: two of a, one of b";
    std::set<uid_t> distinct(uids.begin(), uids.end());
    ASSERT_EQ(distinct.size(), 2u);
    for (uid_t uid : distinct) {
      EXPECT_GE(uid, 1000000u);
      EXPECT_LT(uid, 1000008u);
    }
    EXPECT_EQ(jail.worker_ids().held(), 2u);
  }
  EXPECT_EQ(jail.worker_ids().held(), 0u) << "the pool's workers are gone, and their ids free";
}

TEST(JailSetupIds, ABadRangeIsRefusedAtStart) {
  JailSetup::Options options = JailSetup::accept_any_missing();
  options.worker_ids = WorkerIdRange{1000000, 4};
  options.max_workers = 64;
  try {
    JailSetup jail(options);
    ADD_FAILURE() << "a range smaller than --max-workers was accepted";
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find("fewer ids than --max-workers (64)"),
              std::string::npos)
        << error.what();
  }
}

}  // namespace
}  // namespace corral

// The fair queue: bounds, fairness across keys charged by run time, FIFO within a key, draining
// on shutdown and forgetting idle keys. Run times come from a fake clock that tasks advance, so
// "slow" and "fast" are exact and nothing here depends on the machine's speed.
#include "sched/fair_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace corral::sched {
namespace {

using namespace std::chrono_literals;

// A clock that moves only when told: a task "takes" as long as it advances it.
class FakeClock {
 public:
  QueueClock::time_point now() const {
    return QueueClock::time_point{} + std::chrono::hours(1000) +
           std::chrono::nanoseconds(ns_.load());
  }
  void advance(std::chrono::nanoseconds by) { ns_ += by.count(); }
  std::function<QueueClock::time_point()> function() {
    return [this] { return now(); };
  }

 private:
  std::atomic<int64_t> ns_{0};
};

// Holds a worker in a task until opened, so that tests can fill queues behind it.
class Gate {
 public:
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    changed_.notify_all();
  }
  void wait() {
    std::unique_lock lock(mutex_);
    entered_ = true;
    changed_.notify_all();
    changed_.wait(lock, [this] { return open_; });
  }
  void wait_until_entered() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return entered_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool open_ = false;
  bool entered_ = false;
};

// The order tasks started in, as "key:index".
class Journal {
 public:
  void add(std::string entry) {
    std::lock_guard lock(mutex_);
    entries_.push_back(std::move(entry));
  }
  std::vector<std::string> entries() {
    std::lock_guard lock(mutex_);
    return entries_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> entries_;
};

template <typename Predicate>
bool eventually(Predicate predicate) {
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

FairQueueOptions one_worker(FakeClock& clock, size_t depth = 2000, size_t max_queued = 5000) {
  return {
      .workers = 1, .per_key_depth = depth, .max_queued = max_queued, .clock = clock.function()};
}

TEST(FairQueue, AKeyWithAThousandQueuedDelaysAnotherKeysSingleTaskByAtMostOneTask) {
  FakeClock clock;
  FairQueue queue(one_worker(clock));
  Gate gate;
  ASSERT_FALSE(queue.submit("gate", [&](auto) { gate.wait(); }));
  gate.wait_until_entered();
  Journal journal;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_FALSE(queue.submit("flood", [&, i](auto) {
      journal.add("flood:" + std::to_string(i));
      clock.advance(10ms);
    }));
  }
  ASSERT_FALSE(queue.submit("quiet", [&](auto) { journal.add("quiet:0"); }));
  gate.open();
  queue.shutdown();

  auto entries = journal.entries();
  ASSERT_EQ(entries.size(), 1001u);
  auto quiet = std::find(entries.begin(), entries.end(), "quiet:0") - entries.begin();
  EXPECT_LE(quiet, 1) << "the quiet key's task waited behind " << quiet << " flood tasks";
}

TEST(FairQueue, AKeyArrivingDuringAFloodWithSeveralWorkersStartsAtTheNextFreeWorker) {
  FakeClock clock;
  FairQueue queue(
      {.workers = 3, .per_key_depth = 2000, .max_queued = 5000, .clock = clock.function()});
  Gate first_turns;
  std::atomic<int> entered{0};
  for (int i = 0; i < 3; ++i) {
    ASSERT_FALSE(queue.submit("flood", [&](auto) {
      ++entered;
      first_turns.wait();
    }));
  }
  ASSERT_TRUE(eventually([&] { return entered == 3; }));
  // Every later flood task holds its worker, so the order in which tasks start is the order in
  // which the queue handed them out, whatever the threads' timing: once the first turns end,
  // the two workers that do not take the quiet task are each held by one flood task.
  Gate flood_release;
  std::atomic<int> floods_started{0};
  for (int i = 0; i < 1000; ++i) {
    ASSERT_FALSE(queue.submit("flood", [&](auto) {
      ++floods_started;
      flood_release.wait();
    }));
  }
  std::atomic<int> floods_before_quiet{-1};
  ASSERT_FALSE(queue.submit("quiet", [&](auto) { floods_before_quiet = floods_started.load(); }));
  first_turns.open();
  // Were the flood served first, all three workers would be held and the quiet task never run.
  bool quiet_ran = eventually([&] { return floods_before_quiet >= 0; });
  flood_release.open();
  queue.shutdown();
  ASSERT_TRUE(quiet_ran) << "the quiet key's task did not start while the flood held "
                         << floods_started << " workers";
  EXPECT_LE(floods_before_quiet, 2)
      << "the quiet key's task started after " << floods_before_quiet << " flood tasks";
  EXPECT_EQ(floods_started, 1000);
}

// With a worker left for others: a flood of long tasks, while another key keeps coming, holds at
// most workers - 1 workers, so the other key's task starts at once instead of waiting for a
// flood task to end; alone, the flood may use every worker.
TEST(FairQueue, AKeyOfLongTasksLeavesAWorkerForAKeyThatKeepsComing) {
  FakeClock clock;
  FairQueue queue({.workers = 3,
                   .per_key_depth = 2000,
                   .max_queued = 5000,
                   .clock = clock.function(),
                   .leave_one_for_others = true,
                   .others_window = std::chrono::milliseconds(1000)});
  // Alone, the flood takes every worker.
  Gate alone;
  std::atomic<int> entered{0};
  for (int i = 0; i < 3; ++i) {
    ASSERT_FALSE(queue.submit("flood", [&](auto) {
      ++entered;
      alone.wait();
    }));
  }
  ASSERT_TRUE(eventually([&] { return entered == 3; }));
  alone.open();
  ASSERT_TRUE(eventually([&] { return queue.running() == 0; }));
  // quiet comes, then the flood fills the queue with tasks that hold their workers.
  std::atomic<int> quiet_ran{0};
  ASSERT_FALSE(queue.submit("quiet", [&](auto) { ++quiet_ran; }));
  ASSERT_TRUE(eventually([&] { return quiet_ran == 1; }));
  Gate flood;
  std::atomic<int> floods_started{0};
  for (int i = 0; i < 10; ++i) {
    ASSERT_FALSE(queue.submit("flood", [&](auto) {
      ++floods_started;
      flood.wait();
    }));
  }
  ASSERT_TRUE(eventually([&] { return floods_started == 2; }));
  // quiet's next task finds the worker the flood left: it runs while the flood holds two.
  ASSERT_FALSE(queue.submit("quiet", [&](auto) { ++quiet_ran; }));
  bool ran = eventually([&] { return quiet_ran == 2; });
  EXPECT_EQ(floods_started, 2) << "the flood took the worker left for others";
  // Once quiet has been away for the window, the flood may use every worker again.
  clock.advance(std::chrono::milliseconds(1500));
  EXPECT_TRUE(eventually([&] { return floods_started == 3; }));
  flood.open();
  queue.shutdown();
  EXPECT_TRUE(ran) << "quiet waited for a flood task to end";
  EXPECT_EQ(floods_started, 10);
}

TEST(FairQueue, AKeyWhoseTasksAreSlowGetsFewerTurns) {
  FakeClock clock;
  FairQueue queue(one_worker(clock));
  Gate gate;
  ASSERT_FALSE(queue.submit("gate", [&](auto) { gate.wait(); }));
  gate.wait_until_entered();
  Journal journal;
  for (int i = 0; i < 100; ++i) {
    ASSERT_FALSE(queue.submit("slow", [&](auto) {
      journal.add("slow");
      clock.advance(100ms);
    }));
    ASSERT_FALSE(queue.submit("fast", [&](auto) {
      journal.add("fast");
      clock.advance(1ms);
    }));
  }
  gate.open();
  queue.shutdown();
  auto entries = journal.entries();
  ASSERT_EQ(entries.size(), 200u);
  // Charged by run time, a 100 ms task costs its key as much as a hundred 1 ms tasks: while
  // both keys have work, the fast key gets about 100 turns for each of the slow key's.
  auto first_hundred = std::vector<std::string>(entries.begin(), entries.begin() + 100);
  auto slow_turns = std::count(first_hundred.begin(), first_hundred.end(), "slow");
  EXPECT_LE(slow_turns, 3) << "slow key ran " << slow_turns << " of the first 100 tasks";
  EXPECT_GE(slow_turns, 1) << "the slow key must not be starved either";
}

TEST(FairQueue, EqualKeysTakeTurns) {
  FakeClock clock;
  FairQueue queue(one_worker(clock));
  Gate gate;
  ASSERT_FALSE(queue.submit("gate", [&](auto) { gate.wait(); }));
  gate.wait_until_entered();
  Journal journal;
  for (const char* key : {"a", "b", "c"}) {
    for (int i = 0; i < 30; ++i) {
      ASSERT_FALSE(queue.submit(key, [&, key](auto) {
        journal.add(key);
        clock.advance(5ms);
      }));
    }
  }
  gate.open();
  queue.shutdown();
  auto entries = journal.entries();
  ASSERT_EQ(entries.size(), 90u);
  // In every window of 9 consecutive starts each key has 2 to 4 turns: they alternate.
  for (size_t start = 0; start + 9 <= entries.size(); ++start) {
    for (const char* key : {"a", "b", "c"}) {
      auto turns = std::count(entries.begin() + start, entries.begin() + start + 9, key);
      EXPECT_GE(turns, 2) << key << " at " << start;
      EXPECT_LE(turns, 4) << key << " at " << start;
    }
  }
}

TEST(FairQueue, TasksOfOneKeyStartInTheOrderSubmitted) {
  // One worker, so that the order tasks begin in is the order they were taken. (With several,
  // tasks are taken in order too, but two taken one after the other may begin in either order.)
  FakeClock clock;
  FairQueue queue(one_worker(clock));
  Gate gate;
  ASSERT_FALSE(queue.submit("gate", [&](auto) { gate.wait(); }));
  gate.wait_until_entered();
  std::mutex mutex;
  std::map<std::string, std::vector<int>> started;
  for (int i = 0; i < 300; ++i) {
    for (const char* key : {"a", "b"}) {
      ASSERT_FALSE(queue.submit(key, [&, key, i](auto) {
        std::lock_guard lock(mutex);
        started[key].push_back(i);
        clock.advance(std::chrono::microseconds(i % 7 * 100));
      }));
    }
  }
  gate.open();
  queue.shutdown();
  for (const char* key : {"a", "b"}) {
    ASSERT_EQ(started[key].size(), 300u) << key;
    EXPECT_TRUE(std::is_sorted(started[key].begin(), started[key].end())) << key;
  }
}

TEST(FairQueue, AFullKeyIsRefusedNamingItsDepthWhileOtherKeysAreQueued) {
  FakeClock clock;
  FairQueue queue(one_worker(clock, 3, 100));
  Gate gate;
  ASSERT_FALSE(queue.submit("gate", [&](auto) { gate.wait(); }));
  gate.wait_until_entered();
  std::atomic<int> ran{0};
  for (int i = 0; i < 3; ++i) ASSERT_FALSE(queue.submit("acme", [&](auto) { ++ran; }));
  auto refused = queue.submit("acme", [&](auto) { ++ran; });
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->bound, QueueRejection::Bound::key_depth);
  EXPECT_EQ(to_string(refused->bound), "tenant_queue_full");
  EXPECT_EQ(refused->key_queued, 3u);
  EXPECT_EQ(refused->limit, 3u);
  EXPECT_GE(refused->retry_after_seconds, 1);
  // Another key is not affected by acme's full queue.
  EXPECT_FALSE(queue.submit("globex", [&](auto) { ++ran; }));
  EXPECT_EQ(queue.queued("acme"), 3u);
  EXPECT_EQ(queue.queued(), 4u);
  gate.open();
  queue.shutdown();
  EXPECT_EQ(ran, 4) << "the refused task must not run";
}

TEST(FairQueue, TheGlobalBoundRefusesEveryKeyOnceReached) {
  FakeClock clock;
  FairQueue queue(one_worker(clock, 3, 5));
  Gate gate;
  ASSERT_FALSE(queue.submit("gate", [&](auto) { gate.wait(); }));
  gate.wait_until_entered();
  for (int i = 0; i < 3; ++i) ASSERT_FALSE(queue.submit("acme", [](auto) {}));
  for (int i = 0; i < 2; ++i) ASSERT_FALSE(queue.submit("globex", [](auto) {}));
  for (const char* key : {"globex", "initech", ""}) {
    auto refused = queue.submit(key, [](auto) {});
    ASSERT_TRUE(refused) << key;
    EXPECT_EQ(refused->bound, QueueRejection::Bound::global) << key;
    EXPECT_EQ(to_string(refused->bound), "overloaded");
    EXPECT_EQ(refused->total_queued, 5u);
    EXPECT_EQ(refused->limit, 5u);
    EXPECT_GE(refused->retry_after_seconds, 1);
  }
  // The key's own bound is named first when both are reached.
  auto acme = queue.submit("acme", [](auto) {});
  ASSERT_TRUE(acme);
  EXPECT_EQ(acme->bound, QueueRejection::Bound::key_depth);
  gate.open();
  queue.shutdown();
}

TEST(FairQueue, RetryAfterFollowsTheMeasuredRunTime) {
  FakeClock clock;
  FairQueue queue(one_worker(clock, 2, 3));
  std::atomic<bool> done{false};
  // One 5 s run (on the fake clock) teaches the queue what a task costs here.
  ASSERT_FALSE(queue.submit("slow", [&](auto) {
    clock.advance(5s);
    done = true;
  }));
  ASSERT_TRUE(eventually([&] { return done.load() && queue.running() == 0; }));
  Gate gate;
  ASSERT_FALSE(queue.submit("slow", [&](auto) { gate.wait(); }));
  gate.wait_until_entered();
  ASSERT_FALSE(queue.submit("slow", [](auto) {}));
  ASSERT_FALSE(queue.submit("slow", [](auto) {}));
  auto full = queue.submit("slow", [](auto) {});
  ASSERT_TRUE(full);
  EXPECT_EQ(full->bound, QueueRejection::Bound::key_depth);
  // The key's head starts when the one worker finishes a 5 s task.
  EXPECT_EQ(full->retry_after_seconds, 5);
  ASSERT_FALSE(queue.submit("other", [](auto) {}));
  auto global = queue.submit("third", [](auto) {});
  ASSERT_TRUE(global);
  EXPECT_EQ(global->bound, QueueRejection::Bound::global);
  EXPECT_EQ(global->retry_after_seconds, 5);
  gate.open();
  queue.shutdown();
}

TEST(FairQueue, TasksLearnHowLongTheyWaited) {
  FakeClock clock;
  FairQueue queue(one_worker(clock));
  Gate gate;
  ASSERT_FALSE(queue.submit("gate", [&](auto) { gate.wait(); }));
  gate.wait_until_entered();
  std::atomic<int64_t> waited_ms{-1};
  ASSERT_FALSE(queue.submit("acme", [&](std::chrono::nanoseconds waited) {
    waited_ms = std::chrono::duration_cast<std::chrono::milliseconds>(waited).count();
  }));
  clock.advance(250ms);
  gate.open();
  queue.shutdown();
  EXPECT_EQ(waited_ms, 250);
}

TEST(FairQueue, ShutdownRunsEverythingQueuedAndRefusesNewWork) {
  FairQueue queue({.workers = 2, .per_key_depth = 100, .max_queued = 1000});
  Gate gate;
  std::atomic<int> ran{0};
  for (int i = 0; i < 2; ++i) {
    ASSERT_FALSE(queue.submit("hold", [&](auto) {
      gate.wait();
      ++ran;
    }));
  }
  for (int i = 0; i < 50; ++i) {
    ASSERT_FALSE(queue.submit(i % 2 ? "a" : "b", [&](auto) { ++ran; }));
  }
  std::thread stopper([&] { queue.shutdown(); });
  // Until the stopper thread has begun, a late task may still be accepted (and then runs).
  std::optional<QueueRejection> refused;
  int accepted_late = 0;
  ASSERT_TRUE(eventually([&] {
    refused = queue.submit("late", [&](auto) { ++ran; });
    if (!refused) ++accepted_late;
    return refused.has_value();
  }));
  EXPECT_EQ(refused->bound, QueueRejection::Bound::stopping);
  EXPECT_EQ(to_string(refused->bound), "stopping");
  gate.open();
  stopper.join();
  EXPECT_EQ(ran, 52 + accepted_late);
  EXPECT_EQ(queue.queued(), 0u);
}

TEST(FairQueue, KeysWithNothingQueuedOrRunningAreForgotten) {
  FairQueue queue({.workers = 2, .per_key_depth = 10, .max_queued = 100});
  std::atomic<int> ran{0};
  for (int i = 0; i < 500; ++i) {
    auto refused = queue.submit("tenant-" + std::to_string(i), [&](auto) { ++ran; });
    if (refused) {
      // The global bound may be reached while the workers catch up: wait and resubmit.
      ASSERT_EQ(refused->bound, QueueRejection::Bound::global);
      ASSERT_LE(queue.tracked_keys(), 100u + 2u);
      std::this_thread::sleep_for(1ms);
      --i;
    }
  }
  ASSERT_TRUE(eventually([&] { return ran == 500 && queue.running() == 0; }));
  EXPECT_EQ(queue.tracked_keys(), 0u);
  EXPECT_EQ(queue.queued(), 0u);
}

TEST(FairQueue, AForgottenKeyComesBackWithoutCredit) {
  FakeClock clock;
  FairQueue queue(one_worker(clock));
  std::atomic<bool> done{false};
  // "idle" is served once, then forgotten.
  ASSERT_FALSE(queue.submit("idle", [&](auto) { done = true; }));
  ASSERT_TRUE(eventually([&] { return done.load() && queue.tracked_keys() == 0; }));
  // Meanwhile "busy" is served ten 10 ms tasks, then holds the worker with more queued.
  Journal journal;
  for (int i = 0; i < 10; ++i) {
    ASSERT_FALSE(queue.submit("busy", [&](auto) { clock.advance(10ms); }));
  }
  Gate gate;
  ASSERT_FALSE(queue.submit("busy", [&](auto) { gate.wait(); }));
  gate.wait_until_entered();
  for (int i = 0; i < 5; ++i) {
    ASSERT_FALSE(queue.submit("busy", [&](auto) {
      journal.add("busy");
      clock.advance(10ms);
    }));
  }
  // Back after 100 ms of busy's service, "idle" must not be owed those 100 ms: had it kept the
  // virtual time of its last visit, it would now run its five tasks in a row.
  for (int i = 0; i < 5; ++i) {
    ASSERT_FALSE(queue.submit("idle", [&](auto) {
      journal.add("idle");
      clock.advance(10ms);
    }));
  }
  gate.open();
  queue.shutdown();
  auto entries = journal.entries();
  ASSERT_EQ(entries.size(), 10u);
  for (size_t i = 0; i + 1 < entries.size(); ++i) {
    EXPECT_NE(entries[i], entries[i + 1]) << "two turns in a row at " << i;
  }
}

TEST(FairQueue, ATaskThatThrowsDoesNotStopTheWorker) {
  FairQueue queue({.workers = 1, .per_key_depth = 10, .max_queued = 10});
  std::atomic<int> ran{0};
  ASSERT_FALSE(queue.submit("a", [](auto) { throw std::runtime_error("boom"); }));
  ASSERT_FALSE(queue.submit("a", [&](auto) { ++ran; }));
  queue.shutdown();
  EXPECT_EQ(ran, 1);
}

TEST(FairQueue, ManyThreadsSubmittingConcurrentlyLoseNothing) {
  FairQueue queue({.workers = 3, .per_key_depth = 50, .max_queued = 200});
  std::atomic<int> accepted{0};
  std::atomic<int> ran{0};
  std::vector<std::thread> submitters;
  for (int t = 0; t < 6; ++t) {
    submitters.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        if (!queue.submit("key-" + std::to_string((t + i) % 7), [&](auto) { ++ran; })) ++accepted;
      }
    });
  }
  for (auto& thread : submitters) thread.join();
  queue.shutdown();
  EXPECT_GT(accepted, 0);
  EXPECT_EQ(ran, accepted);
  EXPECT_EQ(queue.tracked_keys(), 0u);
}

TEST(FairQueue, RefusesOptionsThatCouldNeverRunAnything) {
  EXPECT_THROW(FairQueue({.workers = 0}), std::invalid_argument);
  EXPECT_THROW(FairQueue({.workers = 1, .per_key_depth = 0}), std::invalid_argument);
  EXPECT_THROW(FairQueue({.workers = 1, .per_key_depth = 1, .max_queued = 0}),
               std::invalid_argument);
}

}  // namespace
}  // namespace corral::sched

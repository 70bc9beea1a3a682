// CPU lanes (invocation/cpu_lane.h): a lane thread is pinned to its CPU, every lane thread is let
// go to every CPU while a long run is in progress, and the last long run to end pins them back.
#include "invocation/cpu_lane.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <future>
#include <set>
#include <string>
#include <thread>

#include "cpus_of.h"

namespace corral {
namespace {

// A thread that makes itself a lane thread of `cpu` and lives until the object is destroyed.
class LaneThread {
 public:
  explicit LaneThread(int cpu) {
    std::promise<pid_t> started;
    auto tid = started.get_future();
    thread_ = std::thread([this, cpu, &started] {
      pinned_ = pin_this_thread_to(cpu);
      lane_cpu_ = lane_cpu_of_this_thread();
      started.set_value(gettid());
      stop_.get_future().wait();
    });
    tid_ = tid.get();
  }
  ~LaneThread() {
    stop_.set_value();
    thread_.join();
  }
  pid_t tid() const { return tid_; }
  bool pinned() const { return pinned_; }
  int lane_cpu() const { return lane_cpu_; }

 private:
  std::promise<void> stop_;
  std::thread thread_;
  pid_t tid_ = -1;
  bool pinned_ = false;
  int lane_cpu_ = -1;
};

TEST(CpuLanes, ALaneThreadIsPinnedToItsCpu) {
  int cpu = allowed_cpus().back();
  LaneThread lane(cpu);
  EXPECT_TRUE(lane.pinned());
  EXPECT_EQ(lane.lane_cpu(), cpu);
  EXPECT_EQ(cpus_of(lane.tid()), std::set<int>{cpu});
  EXPECT_EQ(lane_cpu_of_this_thread(), -1) << "this thread is on no lane";
}

// Where the kernel shows a thread's slice (/proc/.../sched, with Linux 6.12's custom slices), a
// lane thread's is the short one it asked for.
TEST(CpuLanes, ALaneThreadAsksForAShortTimeSlice) {
  auto slice_of = [](pid_t tid) -> int64_t {
    std::ifstream sched("/proc/self/task/" + std::to_string(tid) + "/sched");
    for (std::string line; std::getline(sched, line);) {
      if (line.starts_with("se.slice")) return std::stoll(line.substr(line.find(':') + 1));
    }
    return -1;
  };
  if (slice_of(gettid()) < 0) GTEST_SKIP() << "this kernel does not show a thread's time slice";
  LaneThread lane(allowed_cpus().front());
  int64_t own = slice_of(gettid());
  if (own == static_cast<int64_t>(kLaneTimeSliceNs))
    GTEST_SKIP() << "the default slice is already as short as a lane's";
  EXPECT_EQ(slice_of(lane.tid()), static_cast<int64_t>(kLaneTimeSliceNs));
}

TEST(CpuLanes, RefusesANumberThatIsNoCpu) {
  std::thread([] {
    EXPECT_FALSE(pin_this_thread_to(-1));
    EXPECT_FALSE(pin_this_thread_to(CPU_SETSIZE));
    EXPECT_EQ(lane_cpu_of_this_thread(), -1);
  }).join();
}

TEST(CpuLanes, LongRunsLetEveryLaneThreadGoUntilTheLastOneEnds) {
  const auto& allowed = allowed_cpus();
  if (allowed.size() < 2) GTEST_SKIP() << "needs two CPUs to tell one CPU from all of them";
  std::set<int> every_cpu(allowed.begin(), allowed.end());
  LaneThread first(allowed[0]), second(allowed[1]);
  ASSERT_TRUE(lanes_pinned());

  begin_long_run();
  EXPECT_FALSE(lanes_pinned());
  EXPECT_EQ(cpus_of(first.tid()), every_cpu);
  EXPECT_EQ(cpus_of(second.tid()), every_cpu);

  begin_long_run();  // a second long run overlaps the first
  end_long_run();    // the first ends: one is still in progress
  EXPECT_FALSE(lanes_pinned());
  EXPECT_EQ(cpus_of(first.tid()), every_cpu);

  {
    LaneThread during(allowed[1]);  // starts while a long run is in progress: not pinned yet
    EXPECT_EQ(cpus_of(during.tid()), every_cpu);
    end_long_run();  // the last one ends
    EXPECT_TRUE(lanes_pinned());
    EXPECT_EQ(cpus_of(first.tid()), std::set<int>{allowed[0]});
    EXPECT_EQ(cpus_of(second.tid()), std::set<int>{allowed[1]});
    EXPECT_EQ(cpus_of(during.tid()), std::set<int>{allowed[1]});
  }

  end_long_run();  // one end too many changes nothing
  EXPECT_TRUE(lanes_pinned());
  EXPECT_EQ(cpus_of(first.tid()), std::set<int>{allowed[0]});
}

}  // namespace
}  // namespace corral

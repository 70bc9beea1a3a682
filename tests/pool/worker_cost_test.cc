// The budget's two inputs: the amount an operator writes, and what a worker of this jail costs.
#include "pool/worker_cost.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace corral {
namespace {

TEST(MemoryAmount, ReadsAShareOfTheMachineOrAnAmount) {
  constexpr uint64_t kTotal = 24ull << 30;
  EXPECT_EQ(parse_memory_amount("25%", kTotal, "--worker-memory-budget"), 6ull << 30);
  EXPECT_EQ(parse_memory_amount("100%", kTotal, "--worker-memory-budget"), kTotal);
  EXPECT_EQ(parse_memory_amount("4G", kTotal, "--worker-memory-budget"), 4ull << 30);
  EXPECT_EQ(parse_memory_amount("512M", kTotal, "--worker-memory-budget"), 512ull << 20);
  EXPECT_EQ(parse_memory_amount("300K", kTotal, "--worker-memory-budget"), 300ull << 10);
  EXPECT_EQ(parse_memory_amount("1048576", kTotal, "--worker-memory-budget"), 1048576u);
}

TEST(MemoryAmount, RefusesWhatItCannotReadNamingTheFlagAndTheForms) {
  for (const char* bad : {"", "%", "0", "0%", "101%", "12X", "4GB", "-1G", "G4", "99999999999T"}) {
    try {
      parse_memory_amount(bad, 1ull << 30, "--worker-memory-budget");
      ADD_FAILURE() << "'" << bad << "' was accepted";
    } catch (const std::invalid_argument& error) {
      std::string message = error.what();
      EXPECT_NE(message.find("--worker-memory-budget takes"), std::string::npos) << message;
      EXPECT_NE(message.find("\"25%\""), std::string::npos) << message;
      EXPECT_NE(message.find("'" + std::string(bad) + "'"), std::string::npos) << message;
    }
  }
}

TEST(WorkerCost, IsMeasuredWithRealWorkersOfTheJail) {
  JailSetup jail(JailSetup::accept_any_missing());
  WorkerCost cost = measure_worker_cost(jail, CORRAL_WORKER_PATH, 8);
  EXPECT_EQ(cost.samples, 8u);
  EXPECT_GE(cost.kernel_bytes, kLeastWorkerBytes / 2);
  EXPECT_LE(cost.kernel_bytes, size_t{16} << 20);
  // A ready Lua worker holds its interpreter's heap and the runtime's: more than 64 KiB, less
  // than the 512 MiB its cgroup allows.
  EXPECT_GT(cost.user_bytes, size_t{64} << 10);
  EXPECT_LT(cost.user_bytes, size_t{64} << 20);
  EXPECT_EQ(jail.worker_ids().held(), 0u) << "the measured workers were stopped";
}

TEST(MachineMemory, IsReadFromTheKernel) { EXPECT_GT(machine_memory_bytes(), 64ull << 20); }

}  // namespace
}  // namespace corral

#include "invocation/random_bytes.h"

#include <pthread.h>
#include <sodium.h>
#include <sys/random.h>

#include <array>
#include <atomic>
#include <cstring>
#include <stdexcept>

namespace corral {
namespace {

std::atomic<unsigned> fork_generation{0};

void count_fork() { fork_generation.fetch_add(1, std::memory_order_relaxed); }

void fill_from_kernel(unsigned char* bytes, size_t size) {
  size_t filled = 0;
  while (filled < size) {
    ssize_t n = getrandom(bytes + filled, size - filled, 0);
    if (n > 0) filled += static_cast<size_t>(n);
  }
}

struct Stream {
  std::array<unsigned char, randombytes_SEEDBYTES> key{};
  bool keyed = false;
  unsigned generation = 0;

  ~Stream() { sodium_memzero(key.data(), key.size()); }
};

}  // namespace

void fill_unpredictable(unsigned char* bytes, size_t size) {
  static const bool fork_counted = [] {
    if (pthread_atfork(nullptr, nullptr, count_fork) != 0) {
      throw std::runtime_error("cannot register the random stream's fork handler (pthread_atfork)");
    }
    return true;
  }();
  (void)fork_counted;
  thread_local Stream stream;
  unsigned generation = fork_generation.load(std::memory_order_relaxed);
  if (!stream.keyed || stream.generation != generation) {
    fill_from_kernel(stream.key.data(), stream.key.size());
    stream.keyed = true;
    stream.generation = generation;
  }
  // One block of output holds the next key and then the caller's bytes (fast key erasure).
  constexpr size_t kBlock = 256;
  std::array<unsigned char, randombytes_SEEDBYTES + kBlock> block;
  while (size > 0) {
    size_t take = size < kBlock ? size : kBlock;
    randombytes_buf_deterministic(block.data(), randombytes_SEEDBYTES + take, stream.key.data());
    std::memcpy(stream.key.data(), block.data(), randombytes_SEEDBYTES);
    std::memcpy(bytes, block.data() + randombytes_SEEDBYTES, take);
    bytes += take;
    size -= take;
  }
  sodium_memzero(block.data(), block.size());
}

}  // namespace corral

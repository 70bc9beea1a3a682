// fill_unpredictable: no two calls alike, in one thread, across threads, and across fork().
#include "invocation/random_bytes.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <set>
#include <string>
#include <thread>

namespace corral {
namespace {

std::string draw(size_t size = 16) {
  std::string bytes(size, '\0');
  fill_unpredictable(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size());
  return bytes;
}

TEST(RandomBytes, EveryCallGivesNewBytes) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(draw());
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(RandomBytes, FillsLongBuffersWithoutRepeatingABlock) {
  std::string bytes = draw(1000);  // more than one block of the stream
  std::set<std::string> chunks;
  for (size_t at = 0; at + 16 <= bytes.size(); at += 16) chunks.insert(bytes.substr(at, 16));
  EXPECT_EQ(chunks.size(), bytes.size() / 16);
}

TEST(RandomBytes, ThreadsDrawFromStreamsOfTheirOwn) {
  std::array<std::string, 2> first;
  std::thread a([&] { first[0] = draw(); });
  std::thread b([&] { first[1] = draw(); });
  a.join();
  b.join();
  EXPECT_NE(first[0], first[1]);
}

TEST(RandomBytes, AForkedChildDoesNotRepeatItsParent) {
  draw();  // the parent's stream is keyed before the fork
  int pipe_ends[2];
  ASSERT_EQ(pipe(pipe_ends), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::string bytes = draw();
    _exit(write(pipe_ends[1], bytes.data(), bytes.size()) == 16 ? 0 : 1);
  }
  close(pipe_ends[1]);
  std::string from_child(16, '\0');
  ASSERT_EQ(read(pipe_ends[0], from_child.data(), from_child.size()), 16);
  close(pipe_ends[0]);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_NE(from_child, draw()) << "the child drew the bytes its parent draws next";
}

}  // namespace
}  // namespace corral

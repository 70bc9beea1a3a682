// The wire format between the supervisor and a corral-worker, over a SOCK_STREAM socketpair.
//
//   offset 0  2 bytes  magic "CR"
//          2  1 byte   protocol version (kFrameVersion)
//          3  1 byte   frame type (FrameType)
//          4  4 bytes  payload length, big-endian, at most the receiver's maximum
//          8  ...      payload: UTF-8 JSON text
//
// The decoder is fed untrusted bytes (the worker may be compromised): it never reads past what
// it was given, never allocates more than the maximum, and rejects any header it does not know.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace corral {

inline constexpr uint8_t kFrameVersion = 1;
inline constexpr size_t kFrameHeaderBytes = 8;
inline constexpr uint32_t kDefaultMaxFrameBytes = 16u << 20;

enum class FrameType : uint8_t {
  invoke = 1,     // supervisor → worker: an InvocationRequest
  result = 2,     // worker → supervisor: an InvocationResult
  violation = 3,  // worker → supervisor: the seccomp filter refused this syscall (decimal number),
                  // then it died
  ready = 4,  // worker → supervisor: jailed, runtime readied, allowlist on; once, before any result
  call = 5,   // worker → supervisor: a capability call of the running invocation (the broker's)
  reply = 6,  // supervisor → worker: the broker's answer to the last call
};
inline constexpr uint8_t kLastFrameType = static_cast<uint8_t>(FrameType::reply);

struct Frame {
  FrameType type;
  std::string payload;
};

struct FrameError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string encode_frame(FrameType type, std::string_view payload);

// Incremental decoder: append bytes as they arrive, take frames as they complete.
class FrameDecoder {
 public:
  explicit FrameDecoder(uint32_t max_payload_bytes = kDefaultMaxFrameBytes)
      : max_payload_bytes_(max_payload_bytes) {}

  void append(std::string_view bytes) { buffer_.append(bytes); }

  // The next complete frame, or nullopt if more bytes are needed. Throws FrameError (and
  // stays failed) on a bad magic, version, type or an oversized length.
  std::optional<Frame> next();

  size_t buffered_bytes() const { return buffer_.size(); }

 private:
  uint32_t max_payload_bytes_;
  std::string buffer_;
  bool failed_ = false;
};

// Blocking helpers for a connected stream socket. write_frame returns false if the peer is
// gone. read_frame returns nullopt on a clean EOF before any byte of a frame, throws FrameError
// on malformed input or EOF in the middle of a frame.
bool write_frame(int fd, FrameType type, std::string_view payload);

// Writes a violation frame naming syscall_number. Async-signal-safe (no allocation): the
// worker calls it from its SIGSYS handler.
void write_violation_frame(int fd, long syscall_number);
std::optional<Frame> read_frame(int fd, FrameDecoder& decoder);

}  // namespace corral

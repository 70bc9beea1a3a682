#include "pool/frame.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace corral {

std::string encode_frame(FrameType type, std::string_view payload) {
  std::string frame;
  frame.reserve(kFrameHeaderBytes + payload.size());
  auto length = static_cast<uint32_t>(payload.size());
  frame += 'C';
  frame += 'R';
  frame += static_cast<char>(kFrameVersion);
  frame += static_cast<char>(type);
  for (int shift = 24; shift >= 0; shift -= 8) frame += static_cast<char>((length >> shift) & 0xff);
  frame.append(payload);
  return frame;
}

std::optional<Frame> FrameDecoder::next() {
  if (failed_) throw FrameError("frame stream already failed");
  if (buffer_.size() < kFrameHeaderBytes) return std::nullopt;
  auto byte = [&](size_t i) { return static_cast<uint8_t>(buffer_[i]); };
  auto fail = [&](const std::string& why) {
    failed_ = true;
    buffer_.clear();
    throw FrameError(why);
  };
  if (byte(0) != 'C' || byte(1) != 'R') fail("bad frame magic");
  if (byte(2) != kFrameVersion) fail("unsupported frame version " + std::to_string(byte(2)));
  uint8_t type = byte(3);
  if (type == 0 || type > kLastFrameType) {
    fail("unknown frame type " + std::to_string(type));
  }
  uint32_t length = (uint32_t{byte(4)} << 24) | (uint32_t{byte(5)} << 16) |
                    (uint32_t{byte(6)} << 8) | uint32_t{byte(7)};
  if (length > max_payload_bytes_) {
    fail("frame of " + std::to_string(length) + " bytes exceeds the maximum of " +
         std::to_string(max_payload_bytes_));
  }
  if (buffer_.size() < kFrameHeaderBytes + length) return std::nullopt;
  Frame frame{static_cast<FrameType>(type), buffer_.substr(kFrameHeaderBytes, length)};
  buffer_.erase(0, kFrameHeaderBytes + length);
  return frame;
}

bool write_frame(int fd, FrameType type, std::string_view payload) {
  std::string bytes = encode_frame(type, payload);
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

void write_violation_frame(int fd, long syscall_number) {
  char frame[kFrameHeaderBytes + 20] = {'C', 'R', static_cast<char>(kFrameVersion),
                                        static_cast<char>(FrameType::violation)};
  char digits[20];
  size_t length = 0;
  unsigned long value = syscall_number < 0 ? 0 : static_cast<unsigned long>(syscall_number);
  do {
    digits[length++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0 && length < sizeof digits);
  frame[7] = static_cast<char>(length);
  for (size_t i = 0; i < length; ++i) frame[kFrameHeaderBytes + i] = digits[length - 1 - i];
  (void)!::write(fd, frame, kFrameHeaderBytes + length);
}

std::optional<Frame> read_frame(int fd, FrameDecoder& decoder) {
  char chunk[64 * 1024];
  for (;;) {
    if (auto frame = decoder.next()) return frame;
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw FrameError(std::string("read failed: ") + strerror(errno));
    if (n == 0) {
      if (decoder.buffered_bytes() == 0) return std::nullopt;
      throw FrameError("channel closed in the middle of a frame");
    }
    decoder.append(std::string_view(chunk, static_cast<size_t>(n)));
  }
}

}  // namespace corral

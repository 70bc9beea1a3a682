// libFuzzer target for the frame decoder, which reads bytes from workers that may be hostile.
//
// Input layout: byte 0 chooses where the stream is split into two appends (the way a socket
// hands over a stream in arbitrary pieces); byte 1 chooses the decoder's maximum payload, 0 to
// 254 bytes as is or 4096 for 255, so that short inputs reach the boundary of the size check;
// the remaining bytes are the stream. Invariants checked:
// - no frame payload is larger than the decoder's maximum;
// - each frame, encoded again, is exactly the bytes it was decoded from, in stream order;
// - once the decoder asks for more bytes, it holds less than one maximum frame;
// - a decoder that has failed stays failed.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "pool/frame.h"

namespace {

void check(bool holds, const char* invariant) {
  if (holds) return;
  std::fprintf(stderr, "frame_fuzz: invariant broken: %s\n", invariant);
  std::abort();
}

class Checker {
 public:
  Checker(std::string_view stream, uint32_t max_payload)
      : stream_(stream), max_payload_(max_payload), decoder_(max_payload) {}

  // Feeds `bytes` and takes every complete frame; false once the decoder has rejected the
  // stream.
  bool feed(std::string_view bytes) {
    decoder_.append(bytes);
    appended_ += bytes.size();
    for (;;) {
      std::optional<corral::Frame> frame;
      try {
        frame = decoder_.next();
      } catch (const corral::FrameError&) {
        expect_stays_failed();
        return false;
      }
      if (!frame) break;
      check(frame->payload.size() <= max_payload_, "payload within the maximum");
      std::string encoded = corral::encode_frame(frame->type, frame->payload);
      check(consumed_ + encoded.size() <= appended_, "frame made of bytes already appended");
      check(stream_.substr(consumed_, encoded.size()) == encoded,
            "re-encoded frame equals the bytes consumed");
      consumed_ += encoded.size();
      check(decoder_.buffered_bytes() == appended_ - consumed_, "buffer holds the unconsumed rest");
    }
    check(decoder_.buffered_bytes() == appended_ - consumed_, "buffer holds the unconsumed rest");
    check(decoder_.buffered_bytes() < corral::kFrameHeaderBytes + max_payload_,
          "an incomplete frame is smaller than a maximum one");
    return true;
  }

 private:
  void expect_stays_failed() {
    try {
      decoder_.next();
    } catch (const corral::FrameError&) {
      return;
    }
    check(false, "a failed decoder stays failed");
  }

  std::string_view stream_;
  uint32_t max_payload_;
  corral::FrameDecoder decoder_;
  size_t appended_ = 0;
  size_t consumed_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  std::string_view stream(reinterpret_cast<const char*>(data + 2), size - 2);
  size_t split = stream.size() * data[0] / 255;
  uint32_t max_payload = data[1] == 255 ? 4096 : data[1];
  Checker checker(stream, max_payload);
  if (checker.feed(stream.substr(0, split))) checker.feed(stream.substr(split));
  return 0;
}

// corral-worker: runs invocations sent by its supervisor over descriptor 3, one at a time,
// until the channel closes. It opens nothing itself.
#include <unistd.h>

#include <cstdio>

#include "pool/frame.h"
#include "runtime/runtime.h"

namespace {

constexpr int kChannelFd = 3;

corral::InvocationRequest parse_request(const std::string& payload) {
  auto message = nlohmann::json::parse(payload);
  corral::InvocationRequest request;
  request.invocation_id = message.at("invocation_id").get<std::string>();
  request.source = message.at("source").get<std::string>();
  request.input = message.at("input");
  request.limits = corral::limits_from_json(message.at("limits"));
  return request;
}

}  // namespace

int main() {
  // The supervisor gives us only the channel; close anything else that leaked in.
  close_range(kChannelFd + 1, ~0U, 0);
  corral::FrameDecoder decoder;
  for (;;) {
    std::optional<corral::Frame> frame;
    try {
      frame = corral::read_frame(kChannelFd, decoder);
    } catch (const corral::FrameError& error) {
      std::fprintf(stderr, "corral-worker: bad frame from the supervisor: %s\n", error.what());
      return 3;
    }
    if (!frame) return 0;  // the supervisor closed the channel: done
    if (frame->type != corral::FrameType::invoke) {
      std::fprintf(stderr, "corral-worker: unexpected frame type from the supervisor\n");
      return 3;
    }
    corral::InvocationResult result;
    try {
      result = corral::runtime::run_invocation(parse_request(frame->payload));
    } catch (const std::exception& error) {
      std::fprintf(stderr, "corral-worker: malformed invocation: %s\n", error.what());
      return 3;
    }
    // Script-made text (error messages) may hold invalid UTF-8: replace it rather than fail.
    auto payload = corral::to_json(result).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (!corral::write_frame(kChannelFd, corral::FrameType::result, payload)) return 0;
  }
}

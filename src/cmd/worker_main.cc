// corral-worker: started by its supervisor in fresh namespaces (see src/jail/spawn.cc), it jails
// itself (src/jail/contain.cc), readies the runtime, locks its syscalls down, then runs
// invocations sent over descriptor 3, one at a time, until the channel closes.
#include <malloc.h>
#include <unistd.h>

#include <cstdio>

#include "jail/jail.h"
#include "pool/frame.h"
#include "runtime/runtime.h"

namespace {

using corral::jail::kChannelFd;

corral::InvocationRequest parse_request(const std::string& payload) {
  auto message = nlohmann::json::parse(payload);
  corral::InvocationRequest request;
  request.invocation_id = message.at("invocation_id").get<std::string>();
  request.source = message.at("source").get<std::string>();
  request.input = std::move(message.at("input"));
  request.limits = corral::limits_from_json(message.at("limits"));
  if (message.contains("capabilities")) {
    request.capabilities = message["capabilities"].get<std::vector<std::string>>();
  }
  return request;
}

// Capability calls travel to the supervisor's broker as call frames; the worker waits for the
// reply frame. The supervisor's deadline keeps running meanwhile.
class ChannelBroker : public corral::runtime::BrokerLink {
 public:
  explicit ChannelBroker(corral::FrameDecoder& decoder) : decoder_(decoder) {}

  std::string call(const std::string& call_json) override {
    if (!corral::write_frame(kChannelFd, corral::FrameType::call, call_json)) {
      throw std::runtime_error("the supervisor closed the channel");
    }
    auto frame = corral::read_frame(kChannelFd, decoder_);
    if (!frame || frame->type != corral::FrameType::reply) {
      throw std::runtime_error("the supervisor did not answer the call");
    }
    return std::move(frame->payload);
  }

 private:
  corral::FrameDecoder& decoder_;
};

void report_violation(long syscall_number) {
  corral::write_violation_frame(kChannelFd, syscall_number);
}

// Everything the runtime would otherwise set up lazily is set up now, before the filesystem is
// gone and the syscall allowlist is in force: throwaway invocations exercise the allocator, the
// clocks, the random seed, the date functions, and every way of failing (the first C++
// exception, for one, initialises the unwinder).
void ready_the_runtime(corral::runtime::Engine& engine) {
  const char* warm_ups[] = {
      "function handle() return {os.date('%c', 0), os.time(), os.clock(), math.random(), "
      "('x'):rep(1000)} end",
      "function handle() error('warm-up') end",
      "function handle() error({table = true}) end",
      "function handle() return function() end end",
      "function handle( syntax error",
      "function handle() while true do end end",
      "function handle() local t = {} while true do t[#t + 1] = {} end end",
      "function handle() print(('x'):rep(2000)) end",
  };
  for (const char* source : warm_ups) {
    corral::InvocationRequest warm_up;
    warm_up.invocation_id = "warm-up";
    warm_up.source = source;
    warm_up.limits = corral::LimitsPolicy{}.defaults;
    warm_up.limits.fuel = 10000;
    warm_up.limits.memory_bytes = 64 << 10;
    warm_up.limits.log_bytes = 1024;
    engine.run(warm_up);
  }
  // Last, a run that ends well, so that the engine keeps its state ready for the first
  // invocation.
  corral::InvocationRequest ready;
  ready.invocation_id = "warm-up";
  ready.source = "function handle(input) return input end";
  ready.limits = corral::LimitsPolicy{}.defaults;
  engine.run(ready);
  // Give back what the warm-ups left in the heap: an idle worker should be small.
  malloc_trim(0);
}

}  // namespace

int main(int argc, char** argv) {
  corral::jail::ContainOptions jail;
  corral::runtime::Engine engine({.output_as_text = true, .count_cpu_between_runs = true});
  try {
    jail = corral::jail::options_from_arguments(argc, argv);
    // Even without the process layer, nothing but the channel is kept (descriptor 4 is the
    // binary itself, left open for the exec).
    close_range(kChannelFd + 1, ~0U, 0);
    corral::jail::contain(jail);
    ready_the_runtime(engine);
    corral::jail::lock_down(jail, report_violation);
    engine.restart_cpu_count();  // jailing is not the first invocation's CPU
    corral::write_frame(kChannelFd, corral::FrameType::ready, "");
  } catch (const std::exception& error) {
    std::fprintf(stderr, "corral-worker: %s\n", error.what());
    return corral::jail::kContainFailedExitStatus;
  }
  corral::FrameDecoder decoder;
  ChannelBroker broker(decoder);
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
      result = engine.run(parse_request(frame->payload), &broker);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "corral-worker: malformed invocation: %s\n", error.what());
      return 3;
    }
    // Script-made text (error messages) may hold invalid UTF-8: replaced rather than refused.
    if (!corral::write_frame(kChannelFd, corral::FrameType::result, corral::to_json_text(result))) {
      return 0;
    }
  }
}

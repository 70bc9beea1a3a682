// The seam between whoever receives an invocation (the API, the CLI) and whatever runs it
// (today a corral-worker process per slot; the jailed pool later). Implementations must be
// safe to call from several threads at once and must always return a result: a failure of
// the machinery itself is reported as Outcome::crashed, never thrown.
#pragma once

#include "invocation/invocation.h"

namespace corral {

class Executor {
 public:
  virtual ~Executor() = default;
  virtual InvocationResult run(const InvocationRequest& request) = 0;
};

}  // namespace corral

-- expect: limit_exceeded fuel
-- limits: {"fuel": 1000000, "timeout_ms": 1000}
-- why: top-level code runs on every invocation before handle; an infinite loop there must be metered just like one inside handle.
local n = 0
while true do n = n + 1 end
function handle(input, ctx)
  error("escaped: top-level loop finished")
end

-- expect: limit_exceeded fuel
-- limits: {"memory_bytes": 8388608, "fuel": 5000000, "timeout_ms": 1000}
-- why: allocating lots of short-lived garbage must be collected rather than count as held memory, so only fuel (not a false memory trip, not a crash) ends the run.
function handle(input, ctx)
  while true do
    local t = { string.rep("y", 1000), {}, {} }
  end
end

-- expect: limit_exceeded fuel
-- limits: {"fuel": 1000000, "timeout_ms": 2000}
-- why: a bare infinite loop must be stopped by instruction metering (fuel) well before the wall-time limit.
function handle(input, ctx)
  local n = 0
  while true do n = n + 1 end
end

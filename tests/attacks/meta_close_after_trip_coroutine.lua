-- expect: limit_exceeded fuel
-- limits: {"fuel": 1000000, "timeout_ms": 500, "memory_bytes": 8388608}
-- why: a coroutine dies from the fuel error with a pending <close> variable, and coroutine.close then runs its looping __close handler; that handler must still be metered so the run ends in fuel, not in a supervisor kill.
function handle(input, ctx)
  local co = coroutine.create(function()
    local x <close> = setmetatable({}, { __close = function()
      local n = 0
      while true do n = n + 1 end
    end })
    while true do end
  end)
  local ok = coroutine.resume(co)
  coroutine.close(co)
  return "done"
end

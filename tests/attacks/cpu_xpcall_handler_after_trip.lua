-- expect: limit_exceeded fuel
-- limits: {"fuel": 1000000, "timeout_ms": 500}
-- why: the fuel error itself is raised inside xpcall and its message handler then spins; the handler must stay metered so the run ends in fuel, not in a supervisor kill at the deadline.
function handle(input, ctx)
  local ok, e = xpcall(function() while true do end end, function(m)
    local n = 0
    while true do n = n + 1 end
  end)
  return { ok = ok }
end

-- expect: limit_exceeded fuel
-- limits: {"fuel": 1000000, "timeout_ms": 500}
-- why: a message handler that loops forever runs while an error is being processed; it must still be metered, so the run must end in limit_exceeded fuel long before the wall-time deadline.
function handle(input, ctx)
  local ok, e = xpcall(function() error("boom") end, function(m)
    while true do end
  end)
  return { ok = ok, e = tostring(e) }
end

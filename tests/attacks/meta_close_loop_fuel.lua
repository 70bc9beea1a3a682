-- expect: limit_exceeded fuel
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608, "fuel": 1000000}
-- why: a __close handler that loops forever while a fuel error unwinds must still be metered (the limit is sticky), so the run ends in fuel.
function handle(input, ctx)
  local x <close> = setmetatable({}, { __close = function() while true do end end })
  while true do end
end

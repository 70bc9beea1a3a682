-- expect: limit_exceeded fuel
-- limits: {"fuel": 1000000, "memory_bytes": 8388608, "timeout_ms": 1000}
-- why: table.concat over a huge index range (t[i] missing errors late) must be charged one fuel per element before doing the work, so it ends in fuel rather than a long C loop.
function handle(input, ctx)
  local t = setmetatable({}, { __index = function(_, i) return "x" end })
  -- concat uses raw access, but the fuel charge for 1..2^40 elements must come first
  local s = table.concat({ "a", "b" }, ",", 1, 1 << 40)
  return #s
end

-- expect: limit_exceeded fuel
-- limits: {"timeout_ms": 5000, "memory_bytes": 67108864, "fuel": 1000000}
-- why: xpcall recursion whose handler raises through an erroring <close> variable makes Lua re-enter the handler an exponential number of times during C-stack overflow handling; that Lua code must stay metered so fuel ends the run.
local function handler(m)
  local x <close> = setmetatable({}, { __close = function() error("in close") end })
  error(m)
end
local function rec() return xpcall(rec, handler) end
function handle(input, ctx)
  local ok, e = rec()
  error(e)
end

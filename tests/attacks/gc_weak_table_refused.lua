-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: weak tables (__mode) trigger a Lua 5.4.4 engine bug and are refused by setmetatable, so the script raises.
function handle(input, ctx)
  local t = setmetatable({}, { __mode = "k" })
  error("escaped: __mode metatable accepted")
end

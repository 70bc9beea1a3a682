-- expect: script_error
-- limits: {"memory_bytes": 16777216, "fuel": 1000000000, "timeout_ms": 1000}
-- why: a long chain of __index functions recursing through metamethods nests C calls (luaV_finishget -> call); Lua must raise a C-stack overflow error, not overflow the real C stack.
-- message: C stack overflow
function handle(input, ctx)
  local mt = {}
  mt.__index = function(t, k) return setmetatable({}, mt)[k] end
  local t = setmetatable({}, mt)
  return t.x
end

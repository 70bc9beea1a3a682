-- expect: script_error
-- limits: {"memory_bytes": 33554432, "fuel": 1000000000, "timeout_ms": 1000}
-- why: each coroutine resuming a new coroutine nests lua_resume on the C stack; the C-call limit must end this in a clean error propagated out, not a crash.
-- message: C stack overflow
local function nest(d)
  local co = coroutine.create(nest)
  local ok, err = coroutine.resume(co, d + 1)
  if not ok then error(err, 0) end
  return err
end
function handle(input, ctx)
  return nest(1)
end

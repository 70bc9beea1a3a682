-- expect: script_error
-- limits: {"timeout_ms": 1000, "memory_bytes": 33554432, "fuel": 100000000}
-- why: Lua 5.4.4 bug: a C-stack overflow raised while handling an error (xpcall(loop, loop) with pcall recursion) can overflow the Lua stack; the run must end in a clean error, not a crash.
-- message: error in error handling
local function loop()
  assert(pcall(loop))
end
function handle(input, ctx)
  local err, msg = xpcall(loop, loop)
  error(msg)
end

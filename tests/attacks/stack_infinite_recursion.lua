-- expect: script_error
-- limits: {"memory_bytes": 67108864, "fuel": 1000000000, "timeout_ms": 2000}
-- why: unbounded Lua recursion must hit Lua's stack limit and end as a clean "stack overflow" script_error, never a crash of the worker.
-- message: stack overflow
local function f(n) return 1 + f(n + 1) end
function handle(input, ctx)
  return f(1)
end

-- expect: limit_exceeded memory
-- limits: {"memory_bytes": 4194304, "fuel": 1000000000, "timeout_ms": 1000}
-- why: with a small memory budget, unbounded recursion must be stopped by the allocator refusing stack growth (memory) rather than by crashing.
local function f(a, b, c, d) return 1 + f(a, b, c, d) end
function handle(input, ctx)
  return f(1, 2, 3, 4)
end

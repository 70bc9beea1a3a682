-- expect: limit_exceeded memory
-- limits: {"memory_bytes": 8388608, "fuel": 1000000000, "timeout_ms": 1000}
-- why: an ever-growing table must be refused by the metered allocator at memory_bytes and reported as the memory limit.
function handle(input, ctx)
  local t = {}
  local i = 0
  while true do
    i = i + 1
    t[i] = { i, tostring(i) }
  end
end

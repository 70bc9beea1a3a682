-- expect: limit_exceeded memory
-- limits: {"memory_bytes": 8388608, "fuel": 1000000000, "timeout_ms": 1000}
-- why: table.move copying 20 million elements into a fresh table is affordable in fuel here but must be stopped by the allocator at memory_bytes.
function handle(input, ctx)
  local src = setmetatable({}, { __index = function(_, k) return k end })
  local t = table.move(src, 1, 20000000, 1, {})
  return #t
end

-- expect: limit_exceeded fuel
-- limits: {"memory_bytes": 8388608, "fuel": 1000000, "timeout_ms": 1000}
-- why: table.move over a range of 2^62 elements would loop for ages in C and grow the destination; it must be charged per element up front so fuel stops it instantly.
function handle(input, ctx)
  local t = table.move({ 1, 2, 3 }, 1, 1 << 62, 1, {})
  return #t
end

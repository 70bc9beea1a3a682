-- expect: limit_exceeded fuel
-- limits: {"fuel": 500000, "memory_bytes": 33554432, "timeout_ms": 1000}
-- why: table.unpack over a 999000-element range pushes that many stack values in one C call; it must be charged one fuel per element before any work, so fuel stops it first.
function handle(input, ctx)
  local t = {}
  return select("#", table.unpack(t, 1, 999000))
end

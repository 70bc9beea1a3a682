-- expect: limit_exceeded memory
-- limits: {"memory_bytes": 8388608, "fuel": 1000000000, "timeout_ms": 1000}
-- why: one string.rep call asking for 100 MB (cheap in fuel with a long unit string) must be refused by the allocator, not allocated.
function handle(input, ctx)
  local unit = string.rep("x", 100000)
  local s = string.rep(unit, 1000)
  return #s
end

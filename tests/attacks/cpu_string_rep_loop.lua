-- expect: limit_exceeded fuel
-- limits: {"fuel": 1000000, "memory_bytes": 8388608, "timeout_ms": 2000}
-- why: repeatedly calling string.rep with small outputs does a lot of C work for few VM instructions, so it must be charged per repetition and end in fuel.
function handle(input, ctx)
  local n = 0
  while true do
    local s = string.rep("", 100000)
    n = n + 1
  end
end

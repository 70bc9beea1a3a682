-- expect: limit_exceeded memory
-- limits: {"memory_bytes": 8388608, "fuel": 1000000000, "timeout_ms": 1000}
-- why: doubling a string by concatenation reaches gigabytes in ~30 steps; the allocator must stop it at memory_bytes and the memory error must not be swallowed by pcall.
function handle(input, ctx)
  local s = "x"
  for i = 1, 40 do
    local ok = pcall(function() s = s .. s end)
  end
  return #s
end

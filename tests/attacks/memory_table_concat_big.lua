-- expect: limit_exceeded memory
-- limits: {"memory_bytes": 8388608, "fuel": 1000000000, "timeout_ms": 1000}
-- why: table.concat of 4096 references to one 4 KiB string is cheap in fuel but builds a 16 MiB buffer inside C; the allocator must refuse it (memory), and the error must not escape as a crash.
function handle(input, ctx)
  local piece = string.rep("q", 4096)
  local t = {}
  for i = 1, 4096 do t[i] = piece end
  local s = table.concat(t)
  return #s
end

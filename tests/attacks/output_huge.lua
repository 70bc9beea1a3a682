-- expect: limit_exceeded output_size
-- limits: {"output_bytes": 4096, "timeout_ms": 500, "memory_bytes": 8388608}
-- why: a result whose JSON is far larger than output_bytes must be refused as output_size rather than shipped to the caller.
function handle(input, ctx)
  local t = {}
  for i = 1, 2000 do t[i] = "padding-padding-padding-" .. i end
  return t
end

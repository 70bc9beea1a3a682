-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: load with a reader function could stream unbounded source past the size and fuel checks, so readers must be refused with an error.
function handle(input, ctx)
  local parts = { "return ", "1" }
  local i = 0
  local ok, result = pcall(load, function() i = i + 1 return parts[i] end)
  if ok then error("escaped: load accepted a reader function: " .. tostring(result)) end
  error("held: " .. tostring(result))
end

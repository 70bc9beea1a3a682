-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: string.format("%p") would reveal a heap address (defeating the address-free tostring), so it must be refused with an error.
function handle(input, ctx)
  local ok, result = pcall(function() return string.format("%p", {}) end)
  if ok then error("escaped: string.format("%p") returned " .. tostring(result)) end
  error("held: " .. tostring(result))
end

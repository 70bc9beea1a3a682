-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: string.format("%p") would reveal a heap address (defeating the address-free tostring), so it must be refused with an error.
function handle(input, ctx)
  local s = string.format("%p", {})
  error("escaped: %p gave " .. s)
end

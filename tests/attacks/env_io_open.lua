-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: opening a host file through io.open must be impossible because io is absent, so the call raises.
function handle(input, ctx)
  local ok, result = pcall(function() return io.open("/etc/passwd", "r") end)
  if ok then error("escaped: io.open returned " .. tostring(result)) end
  error("held: " .. tostring(result))
end

-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: reading the worker environment (which may hold secrets) must be impossible because os.getenv is removed, so the call raises.
function handle(input, ctx)
  local ok, result = pcall(function() return os.getenv("PATH") end)
  if ok then error("escaped: os.getenv returned " .. tostring(result)) end
  error("held: " .. tostring(result))
end

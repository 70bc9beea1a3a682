-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: os.setlocale would change process-wide state shared by later invocations (number formatting), so it must be removed and calling it raises.
function handle(input, ctx)
  local ok, result = pcall(function() return os.setlocale("C") end)
  if ok then error("escaped: os.setlocale returned " .. tostring(result)) end
  error("held: " .. tostring(result))
end

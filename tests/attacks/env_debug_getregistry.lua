-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: debug.getregistry would expose the registry (the full os/io libraries live in _LOADED), so debug must be absent and the call raises.
function handle(input, ctx)
  local ok, result = pcall(function() return debug.getregistry() end)
  if ok then error("escaped: debug.getregistry returned " .. tostring(result)) end
  error("held: " .. tostring(result))
end

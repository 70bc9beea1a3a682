-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: loadfile reads host files, so it must be removed and calling it raises.
function handle(input, ctx)
  local ok, result = pcall(function() return loadfile("/etc/passwd") end)
  if ok then error("escaped: loadfile returned " .. tostring(result)) end
  error("held: " .. tostring(result))
end

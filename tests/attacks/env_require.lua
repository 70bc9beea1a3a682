-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: require would load arbitrary modules (including C libraries), so it must be absent and calling it raises.
function handle(input, ctx)
  local ok, result = pcall(function() return require("io") end)
  if ok then error("escaped: require returned " .. tostring(result)) end
  error("held: " .. tostring(result))
end

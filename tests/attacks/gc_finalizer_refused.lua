-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: a __gc finalizer would run during collection, outside the fuel budget and possibly after the run; setmetatable must refuse it, so the script raises.
function handle(input, ctx)
  local ok, result = pcall(setmetatable, {}, { __gc = function() while true do end end })
  if ok then
    collectgarbage()
    error("escaped: a metatable with __gc was accepted")
  end
  error("held: " .. tostring(result))
end

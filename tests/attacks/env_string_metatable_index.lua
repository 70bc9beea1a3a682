-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: getmetatable("") must answer false so the script cannot reach or edit the shared strings metatable; indexing false raises.
function handle(input, ctx)
  local ok, result = pcall(function() return getmetatable("").__index end)
  if ok then error("escaped: getmetatable('').__index returned " .. tostring(result)) end
  error("held: " .. tostring(result))
end

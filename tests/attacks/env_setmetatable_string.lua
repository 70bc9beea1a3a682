-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: setmetatable only accepts tables, so a script cannot replace the strings metatable; the call raises.
function handle(input, ctx)
  local ok, result = pcall(function() return setmetatable("", { __index = function() return "pwned" end }) end)
  if ok then error("escaped: setmetatable on a string returned " .. tostring(result)) end
  error("held: " .. tostring(result))
end

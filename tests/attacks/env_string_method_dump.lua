-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: ("").dump reaches the string table through the strings metatable; dump must be removed from the real table, so the method call raises.
function handle(input, ctx)
  local ok, result = pcall(function() return ("").dump(function() return 1 end) end)
  if ok then error("escaped: (''):dump returned " .. tostring(result)) end
  error("held: " .. tostring(result))
end

-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: string.dump would produce bytecode (the first step to loading hostile binary chunks), so it must be absent and calling it raises.
function handle(input, ctx)
  local ok, result = pcall(function() return string.dump(function() return 1 end) end)
  if ok then error("escaped: string.dump returned " .. tostring(result)) end
  error("held: " .. tostring(result))
end

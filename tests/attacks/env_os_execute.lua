-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: running a shell command must be impossible because os.execute is removed from the sandbox os table, so the call raises.
function handle(input, ctx)
  local ok, result = pcall(function() return os.execute("touch /tmp/corral_escaped") end)
  if ok then error("escaped: os.execute returned " .. tostring(result)) end
  error("held: " .. tostring(result))
end

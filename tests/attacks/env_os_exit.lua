-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: os.exit would kill the worker process (a crash-by-choice denial of service), so it must be removed and calling it raises a script error instead.
function handle(input, ctx)
  local ok, result = pcall(function() return os.exit(0) end)
  if ok then error("escaped: os.exit returned " .. tostring(result)) end
  error("held: " .. tostring(result))
end

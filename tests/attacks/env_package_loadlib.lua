-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: package.loadlib would dlopen host libraries, so package must be absent and indexing it raises.
function handle(input, ctx)
  local ok, result = pcall(function() return package.loadlib("/lib/x86_64-linux-gnu/libc.so.6", "system") end)
  if ok then error("escaped: package.loadlib returned " .. tostring(result)) end
  error("held: " .. tostring(result))
end

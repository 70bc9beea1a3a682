-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: load with an env argument could build a chunk with a custom _ENV; the sandbox refuses any env argument, so load raises.
function handle(input, ctx)
  local ok, result = pcall(function() return load("return io or debug or package", "x", "t", { io = "fake" }) end)
  if ok then error("escaped: load with an env argument returned " .. tostring(result)) end
  error("held: " .. tostring(result))
end

-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: load with an env argument could build a chunk with a custom _ENV; the sandbox refuses any env argument, so load raises.
function handle(input, ctx)
  local f = load("return io or debug or package", "x", "t", { io = "fake" })
  error("escaped: load accepted an env argument: " .. tostring(f))
end

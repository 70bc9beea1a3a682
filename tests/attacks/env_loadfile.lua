-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: loadfile reads host files, so it must be removed and calling it raises.
function handle(input, ctx)
  local f = loadfile("/etc/passwd")
  error("escaped: loadfile returned " .. tostring(f))
end

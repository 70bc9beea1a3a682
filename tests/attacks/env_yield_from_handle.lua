-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: yielding out of handle would hand control back to whatever host code resumed it (if the host runs handle in a coroutine); the yield must fail and end the run as script_error.
function handle(input, ctx)
  local ok, result = pcall(coroutine.yield, "escape")
  if ok then error("escaped: a yield out of handle came back with " .. tostring(result)) end
  error("held: " .. tostring(result))
end

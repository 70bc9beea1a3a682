-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: __close handlers that raise while unwinding replace the error; the run must end in a clean script_error with the last error, not a crash or hang.
-- message: close failed after
function handle(input, ctx)
  local mt = { __close = function(_, e) error("close failed after: " .. tostring(e)) end }
  local a <close> = setmetatable({}, mt)
  local b <close> = setmetatable({}, mt)
  local c <close> = setmetatable({}, mt)
  error("original")
end

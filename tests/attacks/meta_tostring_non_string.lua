-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: a __tostring returning a table must be rejected by tostring ("__tostring must return a string"), not passed to the logger as garbage.
-- message: '__tostring' must return a string
function handle(input, ctx)
  local t = setmetatable({}, { __tostring = function() return {} end })
  ctx.log.info(t)
  return "unreachable"
end

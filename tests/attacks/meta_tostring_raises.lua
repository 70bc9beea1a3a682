-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: a __tostring that raises is called by print/tostring; the error must surface as a clean script_error.
-- message: tostring bomb
function handle(input, ctx)
  local t = setmetatable({}, { __tostring = function() error("tostring bomb") end })
  print(t)
  return "unreachable"
end

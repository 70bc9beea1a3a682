-- expect: script_error
-- limits: {"memory_bytes": 16777216, "fuel": 1000000000, "timeout_ms": 1000}
-- why: a __tostring that calls tostring on itself recurses through the sandbox's own C tostring wrapper; this must end in a clean C-stack overflow error.
-- message: C stack overflow
function handle(input, ctx)
  local mt = {}
  mt.__tostring = function(self) return "<" .. tostring(self) .. ">" end
  return tostring(setmetatable({}, mt))
end

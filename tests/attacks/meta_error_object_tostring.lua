-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: an error object with a __tostring that loops must not be called by the host when reporting the error (error objects are shown as JSON), so the run ends as script_error promptly.
-- message: error object: {"code":7}
function handle(input, ctx)
  local obj = setmetatable({ code = 7 }, { __tostring = function() while true do end end })
  error(obj)
end

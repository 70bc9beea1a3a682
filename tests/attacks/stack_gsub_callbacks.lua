-- expect: script_error
-- limits: {"memory_bytes": 16777216, "fuel": 1000000000, "timeout_ms": 1000}
-- why: string.gsub whose replacement function calls gsub again nests C frames (str_gsub -> Lua -> str_gsub); the C-stack guard must raise an error rather than let the worker crash.
-- message: C stack overflow
local function g(s)
  return (string.gsub(s, ".", g))
end
function handle(input, ctx)
  return g("abc")
end

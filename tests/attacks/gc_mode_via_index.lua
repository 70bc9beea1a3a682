-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: __gc hidden behind an __index metatable on the metatable is not seen by rawget, but Lua reads __gc raw too, so it is harmless; the script raises after proving no finalizer ran, or with escaped if one did.
function handle(input, ctx)
  local ran = false
  local proto = { __gc = function() ran = true end, __mode = "k" }
  local mt = setmetatable({}, { __index = proto })
  do local t = setmetatable({}, mt) end
  collectgarbage("collect"); collectgarbage("collect")
  if ran then error("escaped: finalizer inherited through __index ran") end
  error("held: no finalizer inherited through __index ran")
end

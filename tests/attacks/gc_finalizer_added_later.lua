-- expect: ok
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: Lua only marks an object for finalization if __gc is present when setmetatable runs; adding __gc to the metatable afterwards must never run the finalizer, which the script proves by returning normally and erroring if the finalizer ran.
function handle(input, ctx)
  local ran = false
  local mt = {}
  do
    local t = setmetatable({}, mt)
    mt.__gc = function() ran = true end
  end
  for i = 1, 3 do collectgarbage("collect") end
  if ran then error("escaped: a late __gc finalizer ran") end
  return "held: a __gc added after setmetatable never ran"
end

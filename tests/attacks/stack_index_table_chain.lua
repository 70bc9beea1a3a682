-- expect: script_error
-- limits: {"memory_bytes": 16777216, "fuel": 1000000000, "timeout_ms": 1000}
-- why: a 10000-deep chain of __index tables makes one lookup walk the whole chain; Lua caps the chain (MAXTAGLOOP) and must raise a clean error ("'__index' chain too long").
-- message: '__index' chain too long
function handle(input, ctx)
  local t = {}
  for i = 1, 10000 do t = setmetatable({}, { __index = t }) end
  return t.missing
end

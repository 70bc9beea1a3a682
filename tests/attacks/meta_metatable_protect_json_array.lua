-- expect: ok
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: json.array marks tables through a hidden metatable; the script checks that getmetatable does not reveal a writable shared marker table, erroring if it could poison other arrays.
function handle(input, ctx)
  local a = json.array({ 1, 2 })
  local mt = getmetatable(a)
  if type(mt) == "table" then
    mt.__index = function() return "poisoned" end
    local b = json.array()
    if b.anything == "poisoned" then error("escaped: shared json.array metatable is writable") end
  end
  return { verdict = "held: no json.array shared a writable metatable", mt = type(mt) }
end

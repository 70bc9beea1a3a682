-- expect: limit_exceeded memory
-- limits: {"memory_bytes": 8388608, "fuel": 1000000000, "timeout_ms": 2000}
-- why: one metatable shared by a thousand tables becomes weak for all of them at once when its __mode is assigned later; memory filled from inside a coroutine (whose hook the allocator must arm, not the main thread's) must end in limit_exceeded memory, never in an allocation failing inside the VM ("not enough memory" seen by the resume).
function handle(input, ctx)
  local mt = {}
  local tables = {}
  for i = 1, 1000 do tables[i] = setmetatable({}, mt) end
  for _, field in ipairs({ "__mode" }) do mt[field] = "kv" end
  tables[1][{}] = {}
  collectgarbage()
  if next(tables[1]) ~= nil then error("the weak mode did not take effect") end
  local co = coroutine.create(function()
    local keep = {}
    for i = 1, 1e9 do
      local key = {}
      keep[i] = key
      tables[i % 1000 + 1][key] = keep
    end
  end)
  local ok, err = coroutine.resume(co)
  if tostring(err):find("not enough memory") then
    print("escaped: an allocation failed inside the VM with weak tables alive: " .. tostring(err))
  end
  return ok
end

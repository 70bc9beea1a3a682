-- expect: limit_exceeded memory
-- limits: {"memory_bytes": 8388608, "fuel": 1000000000, "timeout_ms": 2000}
-- why: weak tables are allowed because the engine path they were banned for, Lua's emergency collection (run when an allocation fails inside the VM, with weak tables to clear), is out of reach: the allocator never fails an allocation for going over memory_bytes, and the limit is raised between instructions. Filling memory with a weak table alive must end in limit_exceeded memory, and a pcall around it must never catch Lua's own "not enough memory" (that would mean an allocation failed inside the VM).
function handle(input, ctx)
  local weak = setmetatable({}, { __mode = "k" })
  weak[{}] = true
  collectgarbage()
  if next(weak) ~= nil then error("the weak mode did not take effect") end
  local keep = {}
  local ok, err = pcall(function()
    for i = 1, 1e9 do
      local key = {}
      keep[i] = key
      weak[key] = { i }
    end
  end)
  if tostring(err):find("not enough memory") then
    print("escaped: an allocation failed inside the VM with a weak table alive: " .. tostring(err))
  end
  return #keep
end

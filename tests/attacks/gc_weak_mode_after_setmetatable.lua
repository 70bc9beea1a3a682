-- expect: limit_exceeded memory
-- limits: {"memory_bytes": 8388608, "fuel": 1000000000, "timeout_ms": 2000}
-- why: the weak mode written into the metatable after setmetatable (the bypass of the old setmetatable check, issue 24 item 7) makes a working weak table; doubling a string past the limit with it alive must end in limit_exceeded memory raised between instructions, never in an allocation that fails inside the VM (which makes Lua run an emergency collection), which a pcall would see as "not enough memory".
function handle(input, ctx)
  local mt = {}
  local weak = setmetatable({}, mt)
  mt.__mode = "k"
  weak[{}] = true
  collectgarbage()
  if next(weak) ~= nil then error("the weak mode did not take effect") end
  local keep, s = {}, "x"
  for i = 1, 40 do
    local ok, err = pcall(function()
      s = s .. s
      local key = {}
      keep[i] = key
      weak[key] = { s }
    end)
    if not ok and tostring(err):find("not enough memory") then
      print("escaped: an allocation failed inside the VM with a weak table alive: " .. tostring(err))
    end
  end
  return #s
end

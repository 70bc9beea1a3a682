-- expect: limit_exceeded memory
-- limits: {"memory_bytes": 8388608, "fuel": 1000000000, "timeout_ms": 2000}
-- why: rawset(mt, "__mode", "v") on a metatable already in use makes a weak-valued table without any metamethod or setmetatable seeing it; a string doubled past the limit, with the weak table holding each step, must end in limit_exceeded memory raised between instructions, never in an allocation failing inside the VM ("not enough memory" seen by pcall).
function handle(input, ctx)
  local mt = {}
  local weak = setmetatable({}, mt)
  rawset(mt, "__mode", "v")
  weak[1] = {}
  collectgarbage()
  if weak[1] ~= nil then error("the weak mode did not take effect") end
  local s = "x"
  for i = 1, 40 do
    local ok, err = pcall(function() s = s .. s; weak[i] = { s } end)
    if not ok and tostring(err):find("not enough memory") then
      print("escaped: an allocation failed inside the VM with a weak table alive: " .. tostring(err))
    end
  end
  return #s
end

-- expect: limit_exceeded memory
-- limits: {"memory_bytes": 8388608, "fuel": 1000000000, "timeout_ms": 2000}
-- why: a chunk made by load sets __mode on a metatable it is handed (a library function doing the write, not the script's own code); with the weak table alive, filling memory with strings built by string.rep and table.concat must end in limit_exceeded memory, never in an allocation failing inside the VM ("not enough memory" seen by pcall).
function handle(input, ctx)
  local mt = {}
  local weak = setmetatable({}, mt)
  assert(load("local mt = ... mt.__mode = 'k'"))(mt)
  weak[{}] = true
  collectgarbage()
  if next(weak) ~= nil then error("the weak mode did not take effect") end
  local keep = {}
  local ok, err = pcall(function()
    for i = 1, 1e9 do
      local piece = table.concat({ string.rep("w", 4000), i })
      keep[i] = piece
      weak[{ piece }] = piece
    end
  end)
  if tostring(err):find("not enough memory") then
    print("escaped: an allocation failed inside the VM with a weak table alive: " .. tostring(err))
  end
  return #keep
end

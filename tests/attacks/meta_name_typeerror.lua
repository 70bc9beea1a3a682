-- expect: ok
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: __name is used in type-error messages; the script checks that a poisoned __name only changes the message text and leaks no address, erroring if it does.
function handle(input, ctx)
  local t = setmetatable({}, { __name = "%p%s%d" })
  local ok, err = pcall(string.rep, t, 1)
  if ok then error("escaped: string.rep accepted a table") end
  if tostring(err):find("0x") then error("escaped: address in " .. err) end
  return "held: a poisoned __name changed only the message"
end

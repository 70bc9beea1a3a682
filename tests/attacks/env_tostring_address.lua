-- expect: ok
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: tostring and %s on tables/functions must not reveal memory addresses; the script returns proof of the numbered form and errors if a hex address appears.
function handle(input, ctx)
  local outs = { tostring({}), tostring(print), tostring(coroutine.create(function() end)),
                 string.format("%s", {}), string.format("%10s", handle) }
  for _, s in ipairs(outs) do
    if s:find("0x%x") or s:find("%x%x%x%x%x%x%x%x") then error("escaped: address leaked in " .. s) end
  end
  local t = setmetatable({}, { __name = "X" })
  if tostring(t):find("0x") then error("escaped: __name path leaked an address") end
  return "held: tostring and %s show numbers, never addresses"
end

-- expect: limit_exceeded fuel
-- limits: {"fuel": 1000000, "memory_bytes": 8388608, "timeout_ms": 1000}
-- why: table.concat over a huge index range must not become one long unmetered C loop. As in Lua, a range past the table's end stops at the first missing value (Lua's own error, caught here, and no fuel charged for work that never happens); a range whose every value exists (here through __index) is charged one fuel per element as it is visited, so it ends in fuel.
function handle(input, ctx)
  local ok, err = pcall(table.concat, { "a", "b" }, ",", 1, 1 << 40)
  if ok then error("escaped: table.concat over 2^40 elements returned " .. #err .. " bytes") end
  local t = setmetatable({}, { __index = function(_, i) return "x" end })
  local s = table.concat(t, ",", 1, 1 << 40)
  error("escaped: table.concat over 2^40 elements returned " .. #s .. " bytes")
end

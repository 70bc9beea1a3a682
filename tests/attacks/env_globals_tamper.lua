-- expect: ok
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: a script may vandalise its own globals and library tables (string, table, json, tostring); the host must not depend on them when encoding the result, so the run is ok with the raw value.
function handle(input, ctx)
  string.format = nil; string.rep = nil; tostring = nil; table.concat = nil
  json.null = "nope"; json.array = nil; pairs = nil; next = nil; rawget = nil; type = nil
  setmetatable(_G, { __index = function(_, k) error("escaped: host read global " .. tostring(k)) end,
                     __newindex = function() error("escaped: host wrote a global") end })
  return { verdict = "held: the host encoded the result without the vandalised globals", list = { 1, 2, 3 } }
end

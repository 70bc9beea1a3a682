-- expect: ok
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: a loaded chunk shares the script globals, so it may only see the allowlisted names; the script returns a value proving none of the dangerous globals is reachable, and errors if one is.
function handle(input, ctx)
  local f = assert(load("return io, os.execute, os.getenv, package, require, debug, dofile, loadfile, string.dump, warn"))
  local r = table.pack(f())
  for i = 1, r.n do
    if r[i] ~= nil then error("escaped: loaded chunk reached value #" .. i) end
  end
  -- _ENV tricks inside a loaded chunk
  local g = assert(load("local _ENV = _G; return rawget(_G, \"io\") or rawget(_G, \"debug\") or rawget(_G, \"package\")"))
  if g() ~= nil then error("escaped: rawget on _G found a hidden library") end
  for k in pairs(_G) do
    if k == "io" or k == "debug" or k == "package" or k == "require" then error("escaped: _G has " .. k) end
  end
  return "held: a loaded chunk sees none of the removed globals"
end

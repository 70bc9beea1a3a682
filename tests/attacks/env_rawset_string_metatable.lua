-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: the strings metatable is unreachable (getmetatable returns false), so rawset on it gets false and raises; if it were reachable, poisoning __index would leak into later code.
function handle(input, ctx)
  local mt = getmetatable("")
  local ok, result = pcall(rawset, mt, "__index", function() return "pwned" end)
  if ("x").upper == nil or ("x"):upper() == "pwned" then error("escaped: string metatable poisoned") end
  if ok then error("escaped: rawset on the strings metatable succeeded") end
  error("held: " .. tostring(result))
end

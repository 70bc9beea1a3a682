-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 16777216, "fuel": 10000000}
-- why: deeply nested source (200k parentheses) would recurse in the parser; Lua must report a syntax-level error and the script raises it, without crashing the worker.
function handle(input, ctx)
  local src = "return " .. string.rep("(", 200000) .. "1" .. string.rep(")", 200000)
  local f, err = load(src)
  if f then error("escaped: deep nesting parsed") end
  error("held: " .. tostring(err))
end

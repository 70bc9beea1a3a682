-- expect: script_error
-- limits: {"memory_bytes": 16777216, "fuel": 1000000000, "timeout_ms": 1000}
-- why: recursion through pcall nests real C frames; Lua's C-call counter must turn it into a "C stack overflow" error that ends the run cleanly (re-raised at the top), not a segfault.
-- message: C stack overflow
local function f()
  local ok, err = pcall(f)
  if not ok then error(err, 0) end
  return err
end
function handle(input, ctx)
  return f()
end

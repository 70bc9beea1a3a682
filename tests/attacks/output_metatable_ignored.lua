-- expect: ok
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: the encoder must not consult metatables (no __pairs/__index/__len calls that could loop or raise); the script returns a table whose metamethods would error, and the output must be the raw contents.
function handle(input, ctx)
  local bomb = function() error("escaped: encoder called a metamethod") end
  return setmetatable({ a = 1, verdict = "held: the encoder read the raw table" }, { __pairs = bomb, __index = bomb, __len = bomb, __tostring = bomb })
end

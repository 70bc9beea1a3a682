-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: a table that contains itself would make a naive encoder loop forever; the encoder must detect it and end in script_error naming the path.
-- message: output.self: table contains itself
function handle(input, ctx)
  local t = { name = "loop" }
  t.self = t
  return t
end

-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: infinity has no JSON form; returning math.huge must end in script_error, not emit invalid JSON such as inf.
-- message: output[1]: infinity cannot be encoded in JSON
function handle(input, ctx)
  return { -math.huge }
end

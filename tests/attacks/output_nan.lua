-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: NaN and infinities have no JSON form; returning them must end in script_error, not emit invalid JSON.
-- message: output.value: NaN cannot be encoded in JSON
function handle(input, ctx)
  return { value = 0/0 }
end

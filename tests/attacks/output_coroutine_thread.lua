-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: a coroutine value cannot be encoded, so returning one must end in script_error.
-- message: output.co: thread values cannot be encoded
function handle(input, ctx)
  return { co = coroutine.create(function() end) }
end

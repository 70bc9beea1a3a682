-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: an error object that is a function or coroutine has no JSON form; the host must still report a script_error without leaking an address.
-- message: error object is a thread value
function handle(input, ctx)
  error(coroutine.create(function() end))
end

-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: functions cannot be encoded as JSON, so returning one must be a script_error rather than a crash or an address leak.
-- message: output.items[3]: function values cannot be encoded
function handle(input, ctx)
  return { items = { 1, 2, print } }
end

-- expect: limit_exceeded output_size
-- limits: {"output_bytes": 4096, "timeout_ms": 500, "memory_bytes": 8388608}
-- why: a single huge string result (escaping doubles it with quotes/backslashes) must be stopped at output_bytes.
function handle(input, ctx)
  return string.rep("\"\\\n", 100000)
end

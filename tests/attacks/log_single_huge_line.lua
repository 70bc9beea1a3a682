-- expect: limit_exceeded log_size
-- limits: {"log_bytes": 1024, "timeout_ms": 500, "memory_bytes": 8388608}
-- why: one log line bigger than the whole log budget must be refused as log_size, not stored.
function handle(input, ctx)
  ctx.log.warn(string.rep("z", 100000))
  return "unreachable"
end

-- expect: limit_exceeded log_size
-- limits: {"log_bytes": 1024, "timeout_ms": 500, "memory_bytes": 8388608}
-- why: flooding ctx.log.info (and the other levels) must stop at log_bytes with log_size.
function handle(input, ctx)
  local i = 0
  while true do
    i = i + 1
    ctx.log.info("line", i, string.rep("x", 100))
    ctx.log.error("err", i)
  end
end

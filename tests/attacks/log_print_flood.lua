-- expect: limit_exceeded log_size
-- limits: {"log_bytes": 1024, "timeout_ms": 500, "memory_bytes": 8388608}
-- why: an unbounded print loop would flood the captured log; it must stop at log_bytes with log_size, even though the error is caught by pcall.
function handle(input, ctx)
  while true do
    pcall(print, string.rep("spam", 50))
  end
end

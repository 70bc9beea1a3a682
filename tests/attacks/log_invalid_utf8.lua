-- expect: ok
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: log text that is not valid UTF-8 must be sanitised (U+FFFD) rather than corrupt the result JSON; the run itself is ok.
function handle(input, ctx)
  print("\xFF\xFE\xC0\x80", "\xED\xA0\x80")
  ctx.log.debug("\0nul\0")
  return "logged"
end

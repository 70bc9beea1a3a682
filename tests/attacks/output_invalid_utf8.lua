-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: output strings must be valid UTF-8; a string with raw invalid bytes (overlong NUL, lone surrogate) must be refused rather than corrupting the JSON.
-- message: output.s: string is not valid UTF-8
function handle(input, ctx)
  return { s = "\xC0\x80\xED\xA0\x80\xFF" }
end

-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: Lua 5.4.4 utf8.codes accepts spurious continuation bytes; a script must not be able to smuggle invalid UTF-8 out through it, so returning the decoded text ends in script_error (or utf8.codes raises).
-- message: string is not valid UTF-8
function handle(input, ctx)
  local s = "a\x80\x80b"
  local out = {}
  for p, c in utf8.codes(s) do out[#out + 1] = s:sub(p, p) end
  return { raw = s, n = #out }
end

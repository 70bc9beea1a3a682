-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: mode "bt" allows text, so the call is accepted, but a binary chunk passed with it must still be refused (load forces text mode); the script raises with the refusal message.
function handle(input, ctx)
  local f, err = load("\27Lua\x54\x00\x19\x93\r\n\x1a\n", "evil", "bt")
  if f then error("escaped: binary chunk loaded with mode bt") end
  error("held: load refused it: " .. tostring(err))
end

-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: os.remove, os.rename and os.tmpname touch the host filesystem, so they must be absent; the script returns only if all are nil, else raises.
function handle(input, ctx)
  for _, name in ipairs({ "remove", "rename", "tmpname", "difftime" }) do
    if os[name] ~= nil then error("escaped: os." .. name .. " is present") end
  end
  error("held: os.remove, os.rename, os.tmpname and os.difftime are absent")
end

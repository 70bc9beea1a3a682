-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: os.remove, os.rename and os.tmpname touch the host filesystem, so they must be absent; the script returns only if all are nil, else raises.
function handle(input, ctx)
  if os.remove or os.rename or os.tmpname or os.difftime then error("escaped: os file functions present") end
  os.remove("/tmp/x")
end

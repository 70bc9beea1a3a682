-- expect: script_error
-- limits: {"memory_bytes": 8388608, "timeout_ms": 1000}
-- why: stopping the collector (or switching mode / tuning it) would let garbage pile up outside policy, so every collector-changing option must be refused with an error.
function handle(input, ctx)
  for _, opt in ipairs({ "incremental", "generational", "setpause", "setstepmul", "restart" }) do
    if pcall(collectgarbage, opt) then error("escaped: collectgarbage('" .. opt .. "') was allowed") end
  end
  local ok, result = pcall(collectgarbage, "stop")
  if ok then error("escaped: collectgarbage('stop') was allowed") end
  error("held: " .. tostring(result))
end

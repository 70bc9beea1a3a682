-- expect: ok
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: collectgarbage is limited to collect/count/step/isrunning; the script confirms that count works but changing the collector raises, and errors if a forbidden option is accepted.
function handle(input, ctx)
  assert(type(collectgarbage("count")) == "number")
  for _, opt in ipairs({ "stop", "restart", "incremental", "generational", "setpause", "setstepmul" }) do
    if pcall(collectgarbage, opt, 1) then error("escaped: collectgarbage(" .. opt .. ") accepted") end
  end
  return "held: collectgarbage refused every option that changes the collector"
end

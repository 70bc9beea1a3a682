-- expect: limit_exceeded fuel
-- limits: {"fuel": 1000000, "timeout_ms": 2000}
-- why: the script catches the fuel error with pcall and loops again then returns normally; the limit must be sticky so the run still ends in limit_exceeded fuel.
function handle(input, ctx)
  local caught = 0
  for i = 1, 1000 do
    local ok = pcall(function() while true do end end)
    if not ok then caught = caught + 1 end
  end
  -- even if every pcall "recovered", returning normally must not turn into ok
  return { caught = caught }
end

-- expect: limit_exceeded fuel
-- limits: {"fuel": 1000000, "timeout_ms": 2000}
-- why: an infinite loop inside a coroutine (which starts a fresh hook count) and a caught resume error must still be charged to the invocation's fuel and stay sticky.
function handle(input, ctx)
  local co = coroutine.create(function() while true do end end)
  local ok, err = coroutine.resume(co)
  -- try again with wrap, inside pcall, then keep spinning fresh coroutines
  pcall(coroutine.wrap(function() local x = 0 while true do x = x + 1 end end))
  while true do
    coroutine.resume(coroutine.create(function() for i = 1, 100 do end end))
  end
end

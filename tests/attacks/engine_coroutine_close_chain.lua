-- expect: crashed
-- limits: {"timeout_ms": 1000, "memory_bytes": 67108864, "fuel": 100000000}
-- why: Lua 5.4.4 bug: 20000 suspended coroutines whose __close handlers each coroutine.close the previous one recurse without a C-stack check and segfault the worker; the defence is containment: only the worker dies (crashed) and the host survives to report it.
function handle(input, ctx)
  local coro = false
  for i = 1, 20000 do
    local previous = coro
    coro = coroutine.create(function()
      local cc <close> = setmetatable({}, { __close = function()
        if previous then assert(coroutine.close(previous)) end
      end })
      coroutine.yield()
    end)
    assert(coroutine.resume(coro))
  end
  print(coroutine.close(coro))
  return "survived"
end

-- expect: ok
-- limits: {"timeout_ms": 1000, "memory_bytes": 67108864, "fuel": 100000000}
-- why: Lua 5.4.4 segfaults when 20000 suspended coroutines whose __close handlers each coroutine.close the previous one recurse without a C-stack check; the sandbox's coroutine.close refuses to nest deeper than 200, so the chain ends as an ordinary error the script can see (the close returns false) and the worker lives.
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

-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: yielding from a __tostring called by the sandbox C code (ctx.log) crosses a C boundary; it must raise "attempt to yield across a C-call boundary", never longjmp through host frames.
function handle(input, ctx)
  local co = coroutine.wrap(function()
    local t = setmetatable({}, { __tostring = function() coroutine.yield("y") return "x" end })
    ctx.log.info(t)
    return "done"
  end)
  local ok, r = pcall(co)
  if ok then error("escaped: a yield crossed the host's C call and came back with " .. tostring(r)) end
  error("held: " .. tostring(r))
end

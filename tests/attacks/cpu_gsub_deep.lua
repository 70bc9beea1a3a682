-- expect: limit_exceeded wall_time
-- limits: {"fuel": 1000000000, "timeout_ms": 300}
-- why: gsub with a backtracking pattern over a large subject does quadratic-or-worse work inside a single C call, which only the wall-time kill can stop.
function handle(input, ctx)
  local s = string.rep("a", 50000)
  local out, n = string.gsub(s, "a-a-a-a-a-a-b", "x")
  return { n = n }
end

-- expect: limit_exceeded wall_time
-- limits: {"fuel": 1000000000, "timeout_ms": 300}
-- why: a catastrophic backtracking pattern is one long C call that fuel cannot interrupt, so the supervisor must kill it at the wall-time deadline.
function handle(input, ctx)
  local s = string.rep("a", 30000)
  local r = string.find(s, ".-.-.-.-.-.-.-.-b")
  return { found = r }
end

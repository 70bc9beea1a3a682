-- expect: script_error
-- limits: {"memory_bytes": 16777216, "fuel": 1000000000, "timeout_ms": 1000}
-- why: a table.sort comparator that sorts again nests C frames; the C-call limit must raise an error instead of crashing.
-- message: C stack overflow
local function cmp(a, b)
  table.sort({ 3, 2, 1 }, cmp)
  return a < b
end
function handle(input, ctx)
  table.sort({ 3, 2, 1 }, cmp)
  return "sorted"
end

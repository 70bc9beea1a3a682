-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: a result nested 100000 levels deep would overflow a recursive encoder; nesting over 100 levels must be refused as script_error.
-- message: nests deeper than 100 levels
function handle(input, ctx)
  local t = {}
  local root = t
  for i = 1, 100000 do local n = {} t.x = n t = n end
  return root
end

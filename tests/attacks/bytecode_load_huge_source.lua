-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 16777216, "fuel": 10000000}
-- why: load of a source over 1 MiB must be refused before parsing (size cap) so a parser bomb cannot be fed in; the script raises with the refusal.
function handle(input, ctx)
  local src = "return " .. string.rep(" ", 1100000) .. "1"
  local ok, f, err = pcall(load, src)
  if ok and f then error("escaped: a source over 1 MiB was loaded") end
  error("held: " .. tostring(ok and err or f))
end

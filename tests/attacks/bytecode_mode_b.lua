-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: load with mode "b" asks for binary chunks only; the sandbox must refuse the mode outright (raising), since binary chunks are never allowed.
function handle(input, ctx)
  local ok, f, err = pcall(load, "\27Lua\x54\x00", "evil", "b")
  if ok then error("escaped: load with mode b returned " .. tostring(f) .. " / " .. tostring(err)) end
  error("held: " .. tostring(f))
end

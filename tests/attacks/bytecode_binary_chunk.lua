-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: a hand-made binary chunk (ESC Lua header) could carry bytecode that breaks VM invariants; load must refuse binary chunks, so the script raises when load returns nil.
function handle(input, ctx)
  -- Lua 5.4 header: ESC "Lua" 0x54 0x00 LUAC_DATA, sizes, LUAC_INT, LUAC_NUM, then garbage
  local chunk = "\27Lua\x54\x00\x19\x93\r\n\x1a\n\x04\x08\x08\x78\x56\0\0\0\0\0\0\0\0\0\0\0\0\x28\x77\x40"
    .. string.rep("\255", 64)
  local f, err = load(chunk)
  if f then f() error("escaped: binary chunk loaded") end
  error("held: load refused it: " .. tostring(err))
end

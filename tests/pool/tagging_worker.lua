-- A stand-in corral-worker for the pool tests. It answers every invocation with `ok` and an
-- output naming the tenant it was started for and its pid, so that a test can tell which
-- worker served which run. Started as `lua5.4 tagging_worker.lua TENANT PID` with the
-- channel on stdin and stdout.
local tenant, pid = arg[1], tonumber(arg[2])
io.stdout:setvbuf("no")
while true do
  local header = io.stdin:read(8)
  if header == nil or #header < 8 then return end
  local length = string.unpack(">I4", header, 5)
  local payload = length > 0 and io.stdin:read(length) or ""
  local id = payload:match('"invocation_id":"(%x*)"') or ""
  local body = string.format(
    '{"outcome":"ok","invocation_id":"%s","output":{"tenant":"%s","pid":%d},"logs":[],' ..
      '"stats":{"fuel_used":0,"memory_peak_bytes":0,"wall_ms":0,"cpu_ms":0}}',
    id, tenant, pid)
  io.stdout:write("CR\1\2", string.pack(">I4", #body), body)
end

-- expect: script_error
-- limits: {"timeout_ms": 500, "memory_bytes": 8388608}
-- why: an error object that is a cyclic, deep table must be reported without looping forever or crashing while the host encodes it as JSON.
-- message: error object is a table value
function handle(input, ctx)
  local obj = { code = 1 }
  obj.self = obj
  local deep = obj
  for i = 1, 1000 do deep.next = { }; deep = deep.next end
  error(obj)
end

-- Cases for tests/runtime/conformance_test.cc: each calls library functions on the same inputs
-- in corral's sandbox and in stock lua5.4, and the two must report the same results and error
-- messages (line numbers included: both run this text as the chunk "=script").
-- A case is named after the function it exercises ("string.rep huge"); every function the
-- sandbox offers needs at least one. Deliberate differences are listed in the test itself.

local cases = {}
local function case(name, f) cases[#cases + 1] = {name = name, f = f} end

-- Values shown as text both sides agree on: numbers with their subtype, strings escaped,
-- tables by their (sorted) contents, other references by their type.
local function show(value, depth)
  local kind = type(value)
  if kind == "string" then
    return '"' .. value:gsub("[%c\\\"\128-\255]", function(c) return "\\" .. c:byte() end) .. '"'
  elseif kind == "number" then
    return math.type(value) .. ":" .. tostring(value)
  elseif kind == "table" then
    if (depth or 0) >= 3 then return "{...}" end
    local keys, parts = {}, {}
    for key in next, value do keys[#keys + 1] = key end
    table.sort(keys, function(a, b) return show(a, 9) < show(b, 9) end)
    for _, key in ipairs(keys) do
      parts[#parts + 1] = show(key, 9) .. "=" .. show(rawget(value, key), (depth or 0) + 1)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif kind == "nil" or kind == "boolean" then
    return tostring(value)
  end
  return kind
end

local function pack(...) return table.pack(...) end

-- base
case("assert passes", function() return assert(1, "kept") end)
case("assert fails", function() assert(false, "assertion text") end)
case("assert default message", function() assert(nil) end)
case("assert no value", function() assert() end)
case("error string level 1", function() error("boom") end)
case("error level 2", function() local function inner() error("up", 2) end inner() end)
case("error level 0", function() error("bare", 0) end)
case("error table", function() error({code = 7}) end)
case("ipairs", function() local out = {} for i, v in ipairs({5, 6, 7}) do out[i] = v * 2 end return out end)
case("ipairs bad", function() ipairs() end)
case("next", function() return next({}), next({10}) end)
case("next bad", function() next(1) end)
case("pairs", function() local n = 0 for _ in pairs({a = 1, b = 2, 3}) do n = n + 1 end return n end)
case("pairs __pairs", function() return pairs(setmetatable({}, {__pairs = function(t) return 1, 2, 3 end})) end)
case("pairs bad", function() pairs(nil) end)
case("pcall", function() return pcall(error, "inside") end)
case("pcall bad", function() return pcall() end)
case("rawequal", function() local t = {} return rawequal(t, t), rawequal(t, {}), rawequal(1, 1.0) end)
case("rawequal bad", function() rawequal(1) end)
case("rawget", function() return rawget(setmetatable({}, {__index = function() return 1 end}), "x"), rawget({5}, 1) end)
case("rawget bad", function() rawget(1, 1) end)
case("rawlen", function() return rawlen({1, 2, 3}), rawlen("abcd") end)
case("rawlen bad", function() rawlen(5) end)
case("rawset", function() local t = rawset({}, "k", "v") return t.k end)
case("rawset bad", function() rawset({}, nil, 1) end)
case("select", function() return select("#", 1, nil, 3), select(2, "a", "b", "c"), select(-1, "a", "b") end)
case("select bad", function() select(0, 1) end)
case("tonumber", function() return tonumber("0x10"), tonumber("10", 2), tonumber(" 12 "), tonumber("z", 36), tonumber("1e2"), tonumber("x") end)
case("tonumber bad base", function() tonumber("10", 99) end)
case("type", function() return type(nil), type(1), type("s"), type({}), type(print), type(coroutine.create(print)) end)
case("type bad", function() type() end)
case("getmetatable", function() local mt = {__metatable = "locked"} return getmetatable(setmetatable({}, mt)), getmetatable({}) end)
case("getmetatable bad", function() getmetatable() end)
case("setmetatable", function() return getmetatable(setmetatable({}, {__index = {x = 1}})).__index.x end)
case("setmetatable non-table", function() setmetatable(1, {}) end)
case("setmetatable via pcall", function() return pcall(setmetatable, 1, {}) end)
case("setmetatable bad metatable", function() setmetatable({}, 5) end)
case("setmetatable protected", function() setmetatable(setmetatable({}, {__metatable = 1}), {}) end)
case("setmetatable protected __gc", function() setmetatable(setmetatable({}, {__metatable = 1}), {__gc = true}) end)
case("setmetatable __gc", function() setmetatable({}, {__gc = function() end}) end)
case("tostring", function() return tostring(12), tostring(1.5), tostring(nil), tostring(true), tostring("s") end)
case("tostring __tostring", function() return tostring(setmetatable({}, {__tostring = function() return "made" end})) end)
case("tostring __tostring number", function() local s = tostring(setmetatable({}, {__tostring = function() return 42 end})) return type(s), s end)
case("tostring __tostring bad", function() tostring(setmetatable({}, {__tostring = function() return {} end})) end)
case("tostring __name", function() return tostring(setmetatable({}, {__name = "hi"})) end)
case("tostring table", function() return tostring({}) end)
case("tostring function", function() return tostring(print) end)
case("tostring bad", function() tostring() end)
case("xpcall", function() return xpcall(function(a) error(a) end, function(m) return "handled " .. m end, "x") end)
case("xpcall ok", function() return xpcall(function(a, b) return a + b end, print, 1, 2) end)
case("xpcall bad", function() xpcall(print) end)
case("print", function() return print("to the log", 1, nil) end)
case("load", function() return load("return 1 + 1")() end)
case("load default name", function() return load("x = ") end)
case("load named", function() return load("x = ", "=mychunk") end)
case("load file name", function() return pcall(load("\n\nerror('at three')", "@file.lua")) end)
case("load runtime error", function() return pcall(load("local x = nil; return x.y", "=mychunk")) end)
case("load number", function() return load(123) end)
case("load bad name", function() load("return 1", {}) end)
case("load nil", function() load(nil) end)
case("load reader", function() return load(function() return nil end) end)
case("load mode b", function() return load("return 1", "x", "b") end)
case("load binary", function() return load("\27Lua\84\0\25\147\r\n\26\n") end)
case("load env", function() return load("return 1", "x", "t", {}) end)
case("collectgarbage", function() return collectgarbage() end)
case("collectgarbage count", function() return type(collectgarbage("count")) end)
case("collectgarbage isrunning", function() return collectgarbage("isrunning") end)
case("collectgarbage step", function() return type(collectgarbage("step")) end)
case("collectgarbage unknown", function() collectgarbage("nonsense") end)
case("collectgarbage stop", function() collectgarbage("stop") end)
case("collectgarbage generational", function() collectgarbage("generational") end)

-- string
case("string.byte", function() return string.byte("ABC", 1, -1), ("x"):byte() end)
case("string.byte bad", function() string.byte({}) end)
case("string.char", function() return string.char(72, 105) end)
case("string.char bad", function() string.char(256) end)
case("string.find", function() return string.find("hello world", "o w"), string.find("a.b", ".", 1, true), ("abc"):find("(b)(c)") end)
case("string.find bad", function() string.find("x") end)
case("string.format", function() return string.format("%5.1f|%d|%-3s|%q|%x|%g", 3.14159, 42, "a", "q\n", 255, 1e20) end)
case("string.format %s table", function() return string.format("%s", {}) end)
case("string.format %s __name", function() return string.format("%s", setmetatable({}, {__name = "N"})) end)
case("string.format %s __tostring", function() return string.format("[%s]", setmetatable({}, {__tostring = function() return "T" end})) end)
case("string.format __tostring in order", function() string.format("%d %s", "x", setmetatable({}, {__tostring = function() error("must not run") end})) end)
case("string.format bad arg", function() string.format("%d", "x") end)
case("string.format bad float", function() string.format("%d", 1.5) end)
case("string.format missing", function() string.format("%s %s", 1) end)
case("string.format invalid", function() string.format("%y", 1) end)
case("string.format method", function() ("%d"):format("x") end)
case("string.format %p", function() return string.format("%p", {}) end)
case("string.gmatch", function() local out = {} for k, v in string.gmatch("a=1, b=2", "(%w+)=(%w+)") do out[k] = v end return out end)
case("string.gmatch bad", function() string.gmatch() end)
case("string.gsub", function() return string.gsub("hello", "l", "L"), string.gsub("abc", "%w", "%0%0", 2), ("x y"):gsub("%w", {x = "1"}) end)
case("string.gsub bad repl", function() string.gsub("x", "x", true) end)
case("string.gsub bad capture", function() string.gsub("x", "x", "%2") end)
case("string.len", function() return string.len("four"), ("\0a"):len() end)
case("string.len bad", function() string.len() end)
case("string.lower", function() return string.lower("MiXeD") end)
case("string.lower bad", function() string.lower() end)
case("string.match", function() return string.match("key = value", "(%w+)%s*=%s*(%w+)"), string.match("x", "()") end)
case("string.match bad pattern", function() string.match("x", "[") end)
case("string.pack", function() return string.pack(">I2", 258), string.pack("z", "ab") end)
case("string.pack bad", function() string.pack("i17", 1) end)
case("string.packsize", function() return string.packsize("i4i8") end)
case("string.packsize bad", function() string.packsize("s") end)
case("string.unpack", function() return string.unpack(">I2", "\1\2"), string.unpack("z", "ab\0") end)
case("string.unpack bad", function() string.unpack("i4", "ab") end)
case("string.rep", function() return string.rep("ab", 3, ","), string.rep("x", 0), string.rep("", 1000000) end)
case("string.rep too large", function() return pcall(string.rep, "aa", 1 << 30) end)
case("string.rep too large direct", function() string.rep("x", 1 << 31) end)
case("string.rep bad", function() string.rep("x") end)
case("string.rep via pcall", function() return pcall(string.rep) end)
case("string.rep __name", function() return pcall(string.rep, setmetatable({}, {__name = "point"}), 1) end)
case("string.reverse", function() return string.reverse("abc") end)
case("string.reverse bad", function() string.reverse() end)
case("string.sub", function() return string.sub("hello", 2, -2), ("hello"):sub(-3), ("x"):sub(5) end)
case("string.sub bad", function() string.sub("x", "y") end)
case("string.upper", function() return string.upper("up") end)
case("string.upper bad", function() string.upper({}) end)
case("string metatable", function() return getmetatable("") end)

-- table
case("table.concat", function() return table.concat({1, "b", 3.5}, ", "), table.concat({}, "x"), table.concat({"a", "b", "c"}, "", 2, 3) end)
case("table.concat bad value", function() table.concat({1, {}, 3}) end)
case("table.concat huge range", function() return pcall(table.concat, {}, "", 1, 1 << 40) end)
case("table.concat whole range", function() return pcall(table.concat, {}, "", math.mininteger, math.maxinteger) end)
case("table.concat not a table", function() table.concat("abc") end)
case("table.concat via pcall", function() return pcall(table.concat, 5) end)
case("table.concat __index", function() return table.concat(setmetatable({}, {__index = function(_, i) return "v" .. i end, __len = function() return 3 end})) end)
case("table.insert", function() local t = {1, 2} table.insert(t, 3) table.insert(t, 1, 0) return t end)
case("table.insert bad position", function() table.insert({1}, 5, 2) end)
case("table.insert wrong count", function() table.insert({}, 1, 2, 3) end)
case("table.move", function() return table.move({1, 2, 3}, 1, 3, 2), table.move({1, 2}, 1, 2, 1, {}) end)
case("table.move wrap", function() table.move({}, 1, math.maxinteger, 2) end)
case("table.move too many", function() table.move({}, -1, math.maxinteger, 1) end)
case("table.move missing", function() table.move({}, 1, 3) end)
case("table.move not a table", function() table.move(1, 1, 1, 1) end)
case("table.move via pcall", function() return pcall(table.move, {}, 1, math.maxinteger, 2) end)
case("table.pack", function() return table.pack(1, nil, 3) end)
case("table.remove", function() local t = {1, 2, 3} return table.remove(t), table.remove(t, 1), t end)
case("table.remove bad", function() table.remove({1}, 7) end)
case("table.sort", function() local t = {3, 1, 2} table.sort(t) local u = {"b", "a"} table.sort(u, function(a, b) return a > b end) return t, u end)
case("table.sort bad", function() table.sort({1, "x"}) end)
case("table.sort invalid order", function() local t = {} for i = 1, 20 do t[i] = i end table.sort(t, function() return true end) end)
case("table.unpack", function() return table.unpack({1, 2, 3}), table.unpack({1, 2, 3}, 2), table.unpack({}, 1, 2) end)
case("table.unpack too many", function() return pcall(table.unpack, {}, 1, (1 << 31) - 1) end)
case("table.unpack too many direct", function() table.unpack({}, 1, 1 << 40) end)
case("table.unpack over the stack", function() table.unpack({}, 1, 1e7) end)
case("table.unpack __len", function() local calls = 0 local r = pack(table.unpack(setmetatable({}, {__len = function() calls = calls + 1 return 2 end}))) return r, calls end)
case("table.unpack bad", function() table.unpack(5) end)

-- math
case("math.abs", function() return math.abs(-3), math.abs(-2.5), math.abs(math.mininteger) end)
case("math.abs bad", function() math.abs("x") end)
case("math.ceil", function() return math.ceil(1.2), math.ceil(-1.2), math.ceil(2^70) end)
case("math.floor", function() return math.floor(1.8), math.floor(-1.2), math.floor(5) end)
case("math.floor bad", function() math.floor({}) end)
case("math.fmod", function() return math.fmod(7, 3), math.fmod(-7, 3), math.fmod(7.5, 2) end)
case("math.fmod zero", function() math.fmod(1, 0) end)
case("math.modf", function() return math.modf(3.7), math.modf(-2.5), math.modf(1 / 0) end)
case("math.max", function() return math.max(1, 5, 3), math.max(2.5, 1) end)
case("math.max bad", function() math.max() end)
case("math.min", function() return math.min(4, 2, 8), math.min(1, 1.5) end)
case("math.sqrt", function() return math.sqrt(16), math.sqrt(2) end)
case("math.exp", function() return math.exp(0), math.exp(1) end)
case("math.log", function() return math.log(1), math.log(8, 2), math.log(100, 10), math.log(2.718281828459045) end)
case("math.sin", function() return math.sin(0), math.sin(math.pi / 2) end)
case("math.cos", function() return math.cos(0), math.cos(math.pi) end)
case("math.tan", function() return math.tan(0), math.tan(1) end)
case("math.asin", function() return math.asin(1), math.asin(0) end)
case("math.acos", function() return math.acos(1), math.acos(0) end)
case("math.atan", function() return math.atan(1), math.atan(1, -1), math.atan(0, -1) end)
case("math.deg", function() return math.deg(math.pi), math.deg(1) end)
case("math.rad", function() return math.rad(180), math.rad(1) end)
case("math.tointeger", function() return math.tointeger(3.0), math.tointeger(3.5), math.tointeger("8"), math.tointeger(2^63) end)
case("math.type", function() return math.type(1), math.type(1.0), math.type("1") end)
case("math.type bad", function() math.type() end)
case("math.ult", function() return math.ult(1, -1), math.ult(-1, 1) end)
case("math.ult bad", function() math.ult(1.5, 2) end)
-- Lua 5.3's mathematical functions, kept by the Debian build of Lua 5.4 (LUA_COMPAT_MATHLIB)
case("math.atan2", function() return math.atan2(1, -1) end)
case("math.cosh", function() return math.cosh(0), math.cosh(1) end)
case("math.sinh", function() return math.sinh(0), math.sinh(1) end)
case("math.tanh", function() return math.tanh(0), math.tanh(1) end)
case("math.pow", function() return math.pow(2, 10), math.pow(2, 0.5) end)
case("math.frexp", function() return math.frexp(8), math.frexp(0.3) end)
case("math.ldexp", function() return math.ldexp(0.5, 4) end)
case("math.ldexp bad", function() math.ldexp(1, 1.5) end)
case("math.log10", function() return math.log10(1000) end)
case("math constants", function() return math.pi, math.huge, -math.huge, math.maxinteger, math.mininteger end)
case("math.random seeded", function() math.randomseed(42) return math.random(1, 100), math.random(1000), math.random(), math.random(0) end)
case("math.random bad", function() math.random(2, 1) end)
case("math.random too many", function() math.random(1, 2, 3) end)
case("math.randomseed", function() return math.randomseed(7, 3) end)
case("math.randomseed one", function() return math.randomseed(7) end)
case("math.randomseed bad", function() math.randomseed("x") end)
case("math.randomseed none", function() return math.randomseed() end)

-- utf8
case("utf8.char", function() return utf8.char(72, 228, 8364, 128512) end)
case("utf8.char bad", function() utf8.char(-1) end)
case("utf8.charpattern", function() return utf8.charpattern end)
case("utf8.codes", function() local out = {} for p, c in utf8.codes("aä€") do out[#out + 1] = p .. ":" .. c end return table.concat(out, " ") end)
case("utf8.codes invalid", function() for _ in utf8.codes("a\255") do end end)
case("utf8.codepoint", function() return utf8.codepoint("aä€", 1, -1) end)
case("utf8.codepoint bad", function() utf8.codepoint("\255") end)
case("utf8.len", function() return utf8.len("aä€"), utf8.len("a\255b") end)
case("utf8.len bad", function() utf8.len("abc", 9) end)
case("utf8.offset", function() return utf8.offset("aä€", 3), utf8.offset("aä€", -1) end)
case("utf8.offset bad", function() utf8.offset("aä", 1, 3) end)

-- coroutine
case("coroutine.create", function() return type(coroutine.create(print)) end)
case("coroutine.create bad", function() coroutine.create(1) end)
case("coroutine.create via pcall", function() return pcall(coroutine.create) end)
case("coroutine.resume", function() local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end) return pack(coroutine.resume(co, 1)), pack(coroutine.resume(co, 5)), pack(coroutine.resume(co)) end)
case("coroutine.resume error", function() return coroutine.resume(coroutine.create(function() error("inside") end)) end)
case("coroutine.resume bad", function() coroutine.resume(1) end)
case("coroutine.resume running", function() return coroutine.resume(coroutine.running()) end)
case("coroutine.yield outside", function() coroutine.yield(1) end)
case("coroutine.status", function() local co co = coroutine.create(function() return coroutine.status(co) end) return coroutine.status(co), select(2, coroutine.resume(co)), coroutine.status(co) end)
case("coroutine.status bad", function() coroutine.status(nil) end)
case("coroutine.running", function() local co, main = coroutine.running() return type(co), main end)
case("coroutine.isyieldable", function() return coroutine.isyieldable(), select(2, coroutine.resume(coroutine.create(coroutine.isyieldable))) end)
case("coroutine.wrap", function() local f = coroutine.wrap(function(a) coroutine.yield(a) return "end" end) return f(3), f() end)
case("coroutine.wrap dead", function() local f = coroutine.wrap(function() end) f() f() end)
case("coroutine.wrap error", function() local f = coroutine.wrap(function() error("in wrap") end) f() end)
case("coroutine.wrap error table", function() local f = coroutine.wrap(function() error({1}) end) return pcall(f) end)
case("coroutine.wrap bad", function() coroutine.wrap(1) end)
case("coroutine.close", function() local co = coroutine.create(function() coroutine.yield() end) coroutine.resume(co) return coroutine.close(co), coroutine.status(co) end)
case("coroutine.close error", function() local co = coroutine.create(function() error("was") end) coroutine.resume(co) return coroutine.close(co) end)
case("coroutine.close running", function() coroutine.close(coroutine.running()) end)
case("coroutine.close bad", function() coroutine.close({}) end)

-- os (stock runs with TZ=UTC, the only zone the sandbox knows)
case("os.time", function() return math.type(os.time()) end)
case("os.time table", function() return os.time({year = 2020, month = 2, day = 29, hour = 12, min = 30, sec = 15}) end)
case("os.time default hour", function() return os.time({year = 2000, month = 1, day = 1}) end)
case("os.time missing", function() os.time({year = 2020}) end)
case("os.time bad field", function() os.time({year = 2020, month = "x", day = 1}) end)
case("os.time bad", function() os.time("x") end)
case("os.time via pcall", function() return pcall(os.time, "x") end)
case("os.time normalises", function() local t = {year = 2020, month = 14, day = 1} os.time(t) return t.year, t.month end)
case("os.date", function() return os.date("!%Y-%m-%d %H:%M:%S", 86400 * 365), os.date("!*t", 0) end)
case("os.date local", function() return os.date("%Y-%m-%d %H", 3600) end)
case("os.date bad", function() os.date("%Ez", 0) end)
case("os.date bad time", function() os.date("!%Y", "x") end)
case("os.clock", function() return math.type(os.clock()) end)

-- what is not there at all
case("absent libraries", function() return type(io), type(package), type(debug), type(require), type(dofile) end)

-- What the tests compare: one line per case, then one per function of the environment.
function report()
  local lines = {}
  for _, c in ipairs(cases) do
    local results = table.pack(pcall(c.f))
    local shown = {}
    for i = 1, results.n do shown[i] = show(results[i]) end
    lines[#lines + 1] = "case\t" .. c.name .. "\t" .. table.concat(shown, " ")
  end
  local functions = {}
  for name, value in next, _G do
    if type(value) == "function" and name ~= "report" and name ~= "handle" then
      functions[#functions + 1] = name
    end
  end
  for _, library in ipairs({"string", "table", "math", "utf8", "coroutine", "os", "json"}) do
    for name, value in next, _G[library] or {} do
      if type(value) == "function" then functions[#functions + 1] = library .. "." .. name end
    end
  end
  table.sort(functions)
  for _, name in ipairs(functions) do lines[#lines + 1] = "function\t" .. name end
  return table.concat(lines, "\n")
end

-- Redact PII anywhere in a JSON document: emails, phone numbers, Luhn-valid card
-- numbers (last 4 digits kept) and every value under a secret-looking key.
-- The document is redacted in place: tables that arrived as JSON arrays stay
-- marked as arrays, so `[]` comes back as `[]` rather than `{}`.

-- Words that make a key's whole value secret. Keys are split into words first
-- (snake_case, kebab-case, camelCase), so "refreshToken" and "user_password" match
-- but "classname" does not match "ssn".
local SECRET_WORDS = {"password", "passwd", "secret", "ssn", "token", "api_key", "apikey"}

local function is_secret_key(key)
  if type(key) ~= "string" then return false end
  local words = "_" .. key:gsub("(%l)(%u)", "%1_%2"):gsub("[%s-]", "_"):lower() .. "_"
  for _, w in ipairs(SECRET_WORDS) do
    if words:find("_" .. w .. "_", 1, true) then return true end
  end
  return false
end

-- Luhn checksum over a string of digits.
local function luhn_ok(digits)
  local sum, double = 0, false
  for i = #digits, 1, -1 do
    local d = digits:byte(i) - 48
    if double then
      d = d * 2
      if d > 9 then d = d - 9 end
    end
    sum = sum + d
    double = not double
  end
  return sum % 10 == 0
end

-- Replace every digit but the last four with '*', keeping the separators.
local function mask_card(s, ndigits)
  local seen = 0
  return (s:gsub("%d", function(d)
    seen = seen + 1
    return seen <= ndigits - 4 and "*" or d
  end))
end

local function redact_string(s, count)
  s = s:gsub("[%w._%%+-]+@[%w.-]+%.%a%a+", function()
    count("email")
    return "[EMAIL]"
  end)
  -- A run of digits with the usual separators is a candidate number. It is a card
  -- if it has 13-19 digits and passes Luhn (so order references that merely look
  -- like cards survive), a phone if it has 10-15 digits and is written like one.
  s = s:gsub("%+?%(?%d[%d %-.()]*%d", function(run)
    local digits = run:gsub("%D", "")
    if #digits >= 13 and #digits <= 19 and luhn_ok(digits) then
      count("card")
      return mask_card(run, #digits)
    elseif #digits >= 10 and #digits <= 15 and run:find("[+ %-.()]") then
      count("phone")
      return "[PHONE]"
    end
    return run  -- dates, ids, amounts: left alone
  end)
  return s
end

-- JSONPath-style location, 0-based array indices as JSON tooling expects.
local function child_path(path, key)
  if type(key) == "number" then return path .. "[" .. (key - 1) .. "]" end
  return path .. "." .. key
end

local function walk(node, path, count_at)
  for key, value in pairs(node) do
    local p = child_path(path, key)
    if is_secret_key(key) then
      node[key] = "[REDACTED]"   -- whole value, even an object: no partial secrets
      count_at(p, "secret_key")
    elseif type(value) == "string" then
      node[key] = redact_string(value, function(kind) count_at(p, kind) end)
    elseif type(value) == "table" then
      walk(value, p, count_at)
    end
  end
end

function handle(input, ctx)
  local by_kind = {email = 0, phone = 0, card = 0, secret_key = 0}
  local seen_paths, paths = {}, json.array()   -- stays [] if nothing is redacted
  local total = 0
  local function count_at(path, kind)
    total = total + 1
    by_kind[kind] = by_kind[kind] + 1
    if not seen_paths[path] then
      seen_paths[path] = true
      paths[#paths + 1] = path
    end
  end

  if type(input) == "table" then
    walk(input, "$", count_at)
  elseif type(input) == "string" then
    input = redact_string(input, function(kind) count_at("$", kind) end)
  end
  table.sort(paths)   -- pairs() order is unspecified; sort for a stable report
  ctx.log.info("redactions:", total)
  return {document = input, redactions = {total = total, by_kind = by_kind, paths = paths}}
end

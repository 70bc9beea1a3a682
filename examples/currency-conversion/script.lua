-- Convert line items between currencies in integer minor units (cents, yen, fils).
-- Rates are decimal strings ("1.0853" units per 1 unit of rates_base) and all
-- arithmetic is exact integer arithmetic: a float such as 1.0853 cannot represent
-- the rate exactly, which would make ties (x.5 minor units) round unpredictably.
-- Rounding: half-to-even (banker's), applied once per line to the exact result.

-- ISO 4217 minor units for the currencies this example knows about.
local MINOR_UNITS = {EUR = 2, USD = 2, GBP = 2, CHF = 2, JPY = 0, KWD = 3}
-- `^` always yields a float in Lua (10 ^ 2 == 100.0), so integer powers of ten
-- come from this table; rates are held as integer millionths.
local POW10 = {[0] = 1, 10, 100, 1000, 10000, 100000, 1000000}
local SCALE = POW10[6]

-- "163.42" -> 163420000 (millionths). nil for anything that is not a plain decimal.
local function parse_rate(s)
  if math.type(s) == "integer" then s = tostring(s) end
  if type(s) ~= "string" then return nil end
  local int, frac = s:match("^(%d+)%.?(%d*)$")
  if not int or #frac > 6 then return nil end
  local v = tonumber(int) * SCALE + tonumber((frac .. "000000"):sub(1, 6))
  return v > 0 and v or nil
end

local function gcd(a, b)
  while b ~= 0 do a, b = b, a % b end
  return a
end

-- round(n / d) half-to-even for d > 0, any sign of n.
local function div_round_half_even(n, d)
  local sign = n < 0 and -1 or 1
  n = n * sign
  local q, r = n // d, n % d
  if 2 * r > d or (2 * r == d and q % 2 == 1) then q = q + 1 end
  return q * sign
end

local function format_minor(amount, code)
  local d = MINOR_UNITS[code]
  local sign, abs = amount < 0 and "-" or "", math.abs(amount)
  if d == 0 then return sign .. abs .. " " .. code end
  local unit = POW10[d]
  return string.format("%s%d.%0" .. d .. "d %s", sign, abs // unit, abs % unit, code)
end

local function convert(line, rates)
  local from, to, amount = line.currency, line.to, line.amount_minor
  for _, code in ipairs({from, to}) do
    if not MINOR_UNITS[code] or not rates[code] then
      return nil, "unknown currency " .. tostring(code)
    end
  end
  if math.type(amount) ~= "integer" then return nil, "amount_minor must be an integer" end
  -- amount_to = amount * (rate_to / rate_from) * 10^d_to / 10^d_from, as one fraction.
  local num = rates[to] * POW10[MINOR_UNITS[to]]
  local den = rates[from] * POW10[MINOR_UNITS[from]]
  local g = gcd(num, den)
  num, den = num // g, den // g
  if math.abs(amount) > math.maxinteger // num then return nil, "amount too large" end
  return div_round_half_even(amount * num, den)
end

function handle(input, ctx)
  local rates, errors, codes = {}, json.array(), {}
  for code in pairs(input.rates) do codes[#codes + 1] = code end
  table.sort(codes)   -- so rate errors are reported in a stable order
  for _, code in ipairs(codes) do
    rates[code] = parse_rate(input.rates[code])
    if not rates[code] then errors[#errors + 1] = {id = json.null, error = "bad rate for " .. code} end
  end

  local lines, totals = json.array(), {}
  for _, line in ipairs(input.lines) do
    local converted, err = convert(line, rates)
    if err then
      errors[#errors + 1] = {id = line.id, error = err}
    else
      lines[#lines + 1] = {
        id = line.id,
        from = {currency = line.currency, amount_minor = line.amount_minor,
                display = format_minor(line.amount_minor, line.currency)},
        to = {currency = line.to, amount_minor = converted, display = format_minor(converted, line.to)},
      }
      local t = totals[line.to] or {amount_minor = 0, lines = 0}
      t.amount_minor, t.lines = t.amount_minor + converted, t.lines + 1
      totals[line.to] = t
    end
  end
  for code, t in pairs(totals) do t.display = format_minor(t.amount_minor, code) end

  ctx.log.info(#lines, "converted,", #errors, "errors")
  return {rounding = "half-even", rates_base = input.rates_base,
          lines = lines, totals = totals, errors = errors}
end

-- Enrich a batch of analytics/commerce events with derived fields and tags.
-- Deterministic: every derived value comes from the input, never from the clock.

local WEEKDAYS = {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}

-- Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's
-- days_from_civil). Integer arithmetic only, so `//` throughout.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = y // 400                     -- floor division is right for negative years too
  local yoe = y - era * 400
  local mp = (m + 9) % 12                  -- March = 0 ... February = 11
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- The inverse (civil_from_days), for printing the UTC date without os.date.
local function civil_from_days(z)
  z = z + 719468
  local era = z // 146097
  local doe = z - era * 146097
  local yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
  local doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
  local mp = (5 * doy + 2) // 153
  local d = doy - (153 * mp + 2) // 5 + 1
  local m = mp < 10 and mp + 3 or mp - 9
  return yoe + era * 400 + (m <= 2 and 1 or 0), m, d
end

-- Parse "YYYY-MM-DDTHH:MM:SS" followed by "Z" or "+HH:MM"/"-HH:MM" into
-- seconds since the epoch (UTC). Returns nil for anything else.
local function parse_iso8601(s)
  local y, mo, d, h, mi, sec, zone = s:match("^(%d%d%d%d)-(%d%d)-(%d%d)T(%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  local offset = 0
  if zone ~= "Z" then
    local sign, oh, om = zone:match("^([+-])(%d%d):(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(oh) * 60 + tonumber(om)) * 60
    if sign == "-" then offset = -offset end
  end
  local days = days_from_civil(tonumber(y), tonumber(mo), tonumber(d))
  -- local time = UTC + offset, so UTC = local time - offset
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec) - offset
end

local function url_decode(s)
  s = s:gsub("%+", " ")
  return (s:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

-- Collect utm_* parameters from the URL's query string (fragment ignored).
local function utm_params(url)
  local utm = {}
  for pair in (url:match("%?([^#]*)") or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = url_decode(k)
    if k:sub(1, 4) == "utm_" then utm[k:sub(5)] = url_decode(v) end
  end
  return utm
end

local function tier_for(spend, tiers)
  local best  -- tiers may arrive in any order: take the highest threshold that is met
  for _, t in ipairs(tiers) do
    if spend >= t.min_spend_cents and (not best or t.min_spend_cents > best.min_spend_cents) then best = t end
  end
  return best and best.name or json.null
end

local function enrich(ev, tiers)
  local out = {}
  for k, v in pairs(ev) do out[k] = v end   -- shallow copy; original fields pass through
  local tags = {}
  local utc = ev.timestamp and parse_iso8601(ev.timestamp)
  if utc then
    local days = utc // 86400
    -- 1970-01-01 was a Thursday (index 4 in WEEKDAYS, 1-based Monday-first).
    local wd = WEEKDAYS[(days + 3) % 7 + 1]
    out.utc_date = string.format("%04d-%02d-%02d", civil_from_days(days))
    out.day_of_week = wd
    out.hour_utc = (utc % 86400) // 3600   -- integer: `//`, not `/`
    if wd == "Saturday" or wd == "Sunday" then tags[#tags + 1] = "weekend" end
  else
    tags[#tags + 1] = "bad_timestamp"
  end

  local cust = ev.customer or {}
  if type(cust.email) == "string" then
    out.email_normalized = cust.email:match("^%s*(.-)%s*$"):lower()
  end
  out.customer_tier = tier_for(cust.lifetime_spend_cents or 0, tiers)
  tags[#tags + 1] = "tier:" .. tostring(out.customer_tier)

  local utm = utm_params(ev.page_url or "")
  if next(utm) then
    out.utm = utm
    tags[#tags + 1] = "campaign"
  end

  if ev.type == "checkout.completed" then
    tags[#tags + 1] = "purchase"
    if (ev.order_total_cents or 0) >= 25000 then tags[#tags + 1] = "high_value_order" end
  end

  table.sort(tags)
  out.tags = json.array(tags)
  return out
end

function handle(input, ctx)
  local results = json.array()
  for i, ev in ipairs(input.events) do
    results[i] = enrich(ev, input.tiers)
  end
  ctx.log.info("enriched", #results, "events")
  return {events = results}
end

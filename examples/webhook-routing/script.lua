-- Route a batch of webhook events through an ordered routing table.
-- A rule matches on event type ("order.created" exactly, "order.*" by prefix,
-- "*" for anything) plus optional conditions on event fields. All matching rules
-- contribute destinations, except a rule with action "drop", which discards the
-- event at once (put such rules first).

-- Look up a dotted path ("payload.shipping.country") in a nested table.
local function get_field(event, path)
  local node = event
  for part in path:gmatch("[^.]+") do
    if type(node) ~= "table" then return nil end
    node = node[part]
  end
  return node
end

local function type_matches(pattern, event_type)
  if pattern == "*" then return true end
  if type(event_type) ~= "string" then return false end
  local prefix = pattern:match("^(.*)%.%*$")
  if prefix then return event_type:sub(1, #prefix + 1) == prefix .. "." end
  return pattern == event_type
end

-- Ordering operators only compare numbers with numbers or strings with strings;
-- anything else (missing field, json.null, wrong type) simply does not match
-- instead of raising "attempt to compare".
local function comparable(a, b)
  local ta, tb = type(a), type(b)
  return ta == tb and (ta == "number" or ta == "string")
end

local OPS = {
  eq = function(a, b) return a == b end,
  ne = function(a, b) return a ~= b end,
  gt = function(a, b) return comparable(a, b) and a > b end,
  gte = function(a, b) return comparable(a, b) and a >= b end,
  lt = function(a, b) return comparable(a, b) and a < b end,
  lte = function(a, b) return comparable(a, b) and a <= b end,
  ["in"] = function(a, list)
    for _, v in ipairs(list) do if v == a then return true end end
    return false
  end,
  exists = function(a, want) return (a ~= nil and a ~= json.null) == want end,
}

local function rule_matches(rule, event)
  if not type_matches(rule.match, event.type) then return false end
  for _, cond in ipairs(rule.when or {}) do
    local op = OPS[cond.op] or error("rule " .. rule.name .. ": unknown op " .. tostring(cond.op))
    if not op(get_field(event, cond.field), cond.value) then return false end
  end
  return true
end

local function route(event, routes)
  local destinations, seen, matched = json.array(), {}, json.array()
  for _, rule in ipairs(routes) do
    if rule_matches(rule, event) then
      if rule.action == "drop" then
        return {id = event.id, type = event.type, destinations = json.array(),
                matched_rules = json.array({rule.name}), reason = "dropped by rule " .. rule.name}
      end
      matched[#matched + 1] = rule.name
      -- Destinations keep rule order; one shared by several rules is delivered once.
      for _, dest in ipairs(rule.destinations or {}) do
        if not seen[dest] then
          seen[dest] = true
          destinations[#destinations + 1] = dest
        end
      end
    end
  end
  local reason = #matched > 0 and ("matched " .. table.concat(matched, ", ")) or "no rule matched"
  return {id = event.id, type = event.type, destinations = destinations,
          matched_rules = matched, reason = reason}
end

function handle(input, ctx)
  local results, routed, dropped, deliveries = json.array(), 0, 0, {}
  for i, event in ipairs(input.events) do
    local r = route(event, input.routes)
    results[i] = r
    if #r.destinations == 0 then
      dropped = dropped + 1
      ctx.log.warn("dropping", event.id, "(" .. r.reason .. ")")
    else
      routed = routed + 1
      for _, dest in ipairs(r.destinations) do deliveries[dest] = (deliveries[dest] or 0) + 1 end
    end
  end
  return {results = results, summary = {routed = routed, dropped = dropped, deliveries = deliveries}}
end

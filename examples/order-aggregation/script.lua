-- Aggregate orders per (customer, UTC day) and per product.
-- Cancelled orders are skipped. Money stays in integer cents; the average order
-- value is rounded half-up to a whole cent so it stays an integer in the JSON
-- (in Lua `/` always yields a float: 3000 / 2 is 1500.0).

local COUNTED = {paid = true, shipped = true}

-- Integer a / b rounded half-up, for a >= 0 and b > 0.
local function div_half_up(a, b)
  return (2 * a + b) // (2 * b)
end

local function order_total(order)
  local total, qty = 0, 0
  for _, item in ipairs(order.items) do
    total = total + item.qty * item.unit_price_cents
    qty = qty + item.qty
  end
  return total, qty
end

function handle(input, ctx)
  local groups, by_key = {}, {}     -- list of group tables + index "customer|day" -> group
  local products = {}               -- sku -> {sku, qty, revenue_cents, orders}
  local skipped = json.array()

  for _, order in ipairs(input.orders) do
    if not COUNTED[order.status] then
      skipped[#skipped + 1] = order.id
    else
      local day = order.created_at:sub(1, 10)   -- "YYYY-MM-DD" of a UTC ISO timestamp
      local key = order.customer .. "|" .. day
      local g = by_key[key]
      if not g then
        g = {customer = order.customer, day = day, orders = 0, items = 0, revenue_cents = 0,
             order_ids = json.array()}
        by_key[key] = g
        groups[#groups + 1] = g
      end
      local total, qty = order_total(order)
      g.orders = g.orders + 1
      g.items = g.items + qty
      g.revenue_cents = g.revenue_cents + total
      g.order_ids[#g.order_ids + 1] = order.id

      for _, item in ipairs(order.items) do
        local p = products[item.sku]
        if not p then
          p = {sku = item.sku, qty = 0, revenue_cents = 0, orders = 0}
          products[item.sku] = p
        end
        p.qty = p.qty + item.qty
        p.revenue_cents = p.revenue_cents + item.qty * item.unit_price_cents
        p.orders = p.orders + 1
      end
    end
  end

  for _, g in ipairs(groups) do
    g.avg_order_cents = div_half_up(g.revenue_cents, g.orders)
    table.sort(g.order_ids)
  end
  table.sort(groups, function(a, b)
    if a.customer ~= b.customer then return a.customer < b.customer end
    return a.day < b.day
  end)

  -- Top N products by revenue; ties broken by quantity, then SKU, so the order
  -- never depends on pairs() traversal order.
  local ranked = {}
  for _, p in pairs(products) do ranked[#ranked + 1] = p end
  table.sort(ranked, function(a, b)
    if a.revenue_cents ~= b.revenue_cents then return a.revenue_cents > b.revenue_cents end
    if a.qty ~= b.qty then return a.qty > b.qty end
    return a.sku < b.sku
  end)
  local top = json.array()
  for i = 1, math.min(input.top_n or 3, #ranked) do
    ranked[i].rank = i
    top[i] = ranked[i]
  end

  local revenue, orders = 0, 0
  for _, g in ipairs(groups) do
    revenue, orders = revenue + g.revenue_cents, orders + g.orders
  end
  ctx.log.info(orders, "orders in", #groups, "groups;", #skipped, "skipped")
  return {
    groups = json.array(groups),
    top_products = top,
    totals = {orders = orders, revenue_cents = revenue,
              avg_order_cents = orders > 0 and div_half_up(revenue, orders) or json.null},
    skipped_orders = skipped,
  }
end

-- The script of the CLI walk-through in docs/api.md ("The corral CLI"): it logs, and answers a
-- greeting for input.name.
function handle(input, ctx)
  print("greeting " .. input.name)
  return { greeting = "hello " .. input.name }
end

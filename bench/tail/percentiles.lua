-- wrk script: the peers' chat completion (../shared/peers/chat.lua's request), reporting
-- the tail's shape: p50 to p99.9 in ms.
-- Env: MODEL (default gpt-4o-mini), AUTH (bearer token, optional).
local model = os.getenv("MODEL") or "gpt-4o-mini"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = "Bearer " .. auth end
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"system","content":"You are a helpful assistant."},' ..
           '{"role":"user","content":"Hello, world! Please say hi back."}],"max_tokens":64}'

done = function(summary, latency, requests)
  local out = "RESULT n=" .. summary.requests .. " errors_status=" .. summary.errors.status
  for _, p in ipairs({50, 90, 95, 97, 98, 99, 99.5, 99.9}) do
    out = out .. string.format(" p%s=%.3f", p, latency:percentile(p) / 1000)
  end
  io.write(out .. "\n")
end

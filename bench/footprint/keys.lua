-- wrk script: non-streaming chat completions, each request with the next key of KEYS
-- (a file, one secret per line), so that every seeded tenant and key is used.
local model = os.getenv("MODEL") or "gpt-4o-mini"
local keys = {}
for line in io.lines(os.getenv("KEYS")) do if line ~= "" then keys[#keys + 1] = line end end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"system","content":"You are a helpful assistant."},' ..
           '{"role":"user","content":"Hello, world! Please say hi back."}],"max_tokens":64}'
request = function()
  i = i % #keys + 1
  wrk.headers["Authorization"] = "Bearer " .. keys[i]
  return wrk.format()
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d p50_ms=%.3f p99_ms=%.3f errors_status=%d\n",
    summary.requests, latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end

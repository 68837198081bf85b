-- wrk script: the console benchmark's chat completions (model mock-model, max_tokens 16),
-- each request with the next key of KEYS (a file, one secret per line).
local keys = {}
for line in io.lines(os.getenv("KEYS")) do if line ~= "" then keys[#keys + 1] = line end end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"mock-model","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
request = function()
  i = i % #keys + 1
  wrk.headers["Authorization"] = "Bearer " .. keys[i]
  return wrk.format()
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_s=%.3f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end

-- wrk script for the MCP benchmark: POSTs the JSON-RPC body in $BENCH_BODY_FILE as a
-- 2026-07-28 stateless request (MCP-Protocol-Version, Mcp-Method and, when set,
-- Mcp-Name headers; "Authorization: Bearer $BENCH_BEARER" when set), and prints one
-- line, "WRKJSON {...}", with the latency percentiles in microseconds.
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = os.getenv("BENCH_METHOD")
local name = os.getenv("BENCH_NAME")
if name and name ~= "" then
  wrk.headers["Mcp-Name"] = name
end
local bearer = os.getenv("BENCH_BEARER")
if bearer and bearer ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. bearer
end

local bad = 0
function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"result"', 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "errors": %d, "non2xx": %d, "mean": %.1f, "p50": %.1f, "p90": %.1f, "p99": %.1f, "max": %.1f}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end

-- wrk script for the overhead benchmark: POSTs the body in $BENCH_BODY_FILE (with
-- "Authorization: Bearer $BENCH_BEARER" when set) and prints one machine-readable
-- line, "WRKJSON {...}", with the latency percentiles in microseconds.
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local bearer = os.getenv("BENCH_BEARER")
if bearer and bearer ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. bearer
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"timeouts": %d, "non2xx": %d, "mean": %.1f, "p50": %.1f, "p90": %.1f, "p99": %.1f, "p999": %.1f, "max": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end

-- reconcile: replaces a reservation by the request's actual use (memory.rs `reconcile`).
-- A missing record was reconciled already (or forgotten long after it expired): nothing
-- happens, which is what makes a repeated reconcile harmless.
--
-- KEYS: 1 the request's record, 2 tpm bucket, 3 in-flight set, 4 lifetime spend
-- ARGV: 1 now ms ('' = Redis TIME), 2 month key prefix, 3 request id,
--       4 actual tokens, 5 actual cost (nanos), 6 tpm ('' = none), 7 month key ttl s
-- The month charged is the record's (the month of the reservation), built from the
-- prefix in the tenant's hash tag.
-- Returns 1 if a reservation was reconciled, 0 if there was none.

local rec = redis.call('HMGET', KEYS[1], 'tokens', 'cost', 'month', 'expired')
if not rec[1] then
  return 0
end
-- An expired reservation's slot was freed when it expired.
if rec[4] ~= '1' then
  redis.call('ZREM', KEYS[3], ARGV[3])
end
local tpm_cap = opt(ARGV[6])
if tpm_cap then
  local now = clock(ARGV[1])
  local level, at = bucket(KEYS[2], tpm_cap, now)
  level = math.min(level + (tonumber(rec[1]) - tonumber(ARGV[4])), tpm_cap)
  store_bucket(KEYS[2], tpm_cap, level, at)
end
local delta = tonumber(ARGV[5]) - tonumber(rec[2])
if delta ~= 0 then
  local month_key = ARGV[2] .. rec[3]
  add(month_key, fmt_int(delta))
  redis.call('EXPIRE', month_key, ARGV[7])
  add(KEYS[4], fmt_int(delta))
end
redis.call('DEL', KEYS[1])
return 1

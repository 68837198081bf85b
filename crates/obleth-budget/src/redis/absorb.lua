-- absorb: charges use decided elsewhere (a pod's local share while Redis was
-- unreachable), once per batch (memory.rs `absorb`).
--
-- KEYS: 1 the batch's marker, 2 tpm bucket, 3 lifetime spend
-- ARGV: 1 now ms ('' = Redis TIME), 2 month key prefix, 3 tokens, 4 cost (nanos),
--       5 tpm ('' = none), 6 marker ttl s, 7 month key ttl s
-- Returns 1 if the batch was charged, 0 if it had been already.

if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[6]) then
  return 0
end
local now = clock(ARGV[1])
local tpm_cap = opt(ARGV[5])
if tpm_cap then
  local level, at = bucket(KEYS[2], tpm_cap, now)
  level = math.min(level - tonumber(ARGV[3]), tpm_cap)
  store_bucket(KEYS[2], tpm_cap, level, at)
end
local month_key = ARGV[2] .. month_of(now)
add(month_key, ARGV[4])
redis.call('EXPIRE', month_key, ARGV[7])
add(KEYS[3], ARGV[4])
return 1

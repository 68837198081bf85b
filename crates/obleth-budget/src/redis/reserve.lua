-- reserve: checks every limit of one request and, only if all pass, takes the estimate
-- from all of them (memory.rs `reserve` and `decide`).
--
-- KEYS: 1 tpm bucket, 2 rpm bucket, 3 in-flight set, 4 lifetime spend,
--       5 expired counter, 6 this request's record
-- ARGV: 1 now ms ('' = Redis TIME), 2 month key prefix, 3 record key prefix,
--       4 request id, 5 estimated tokens, 6 estimated cost (nanos),
--       7 tpm, 8 rpm, 9 max in flight, 10 monthly budget, 11 lifetime budget ('' = none),
--       12 reservation ttl ms, 13 record ttl ms, 14 month key ttl s
-- The month key (prefix .. YYYY-MM) depends on the script's clock, so it is built here;
-- it shares the tenant's hash tag, hence its slot.
-- Returns {outcome, expired, now, tpm level, rpm level, monthly spent, lifetime spent,
-- failed}: outcome 0 allowed, 1 allowed (repeated reserve), 2 monthly budget, 3 lifetime
-- budget, 4 rate limits; failed is a bit set: 1 in flight, 2 rpm, 4 tpm. Levels are ''
-- without that limit.

local now = clock(ARGV[1])
local expired = expire(KEYS[3], KEYS[5], ARGV[3], now)
local month = month_of(now)
local month_key = ARGV[2] .. month
local tokens, cost = tonumber(ARGV[5]), tonumber(ARGV[6])
local tpm_cap, rpm_cap, max_in_flight = opt(ARGV[7]), opt(ARGV[8]), opt(ARGV[9])
local monthly_budget, lifetime_budget = opt(ARGV[10]), opt(ARGV[11])

local monthly = tonumber(redis.call('GET', month_key) or '0')
local lifetime = tonumber(redis.call('GET', KEYS[4]) or '0')

if redis.call('EXISTS', KEYS[6]) == 1 then
  -- A repeated reserve: it was granted the first time. The windows are read, not written.
  return {1, expired, now, read_level(KEYS[1], tpm_cap, now), read_level(KEYS[2], rpm_cap, now), monthly,
    lifetime, 0}
end

local tpm_level, tpm_at, rpm_level, rpm_at
if rpm_cap then
  rpm_level, rpm_at = bucket(KEYS[2], rpm_cap, now)
end
if tpm_cap then
  tpm_level, tpm_at = bucket(KEYS[1], tpm_cap, now)
end

-- Spend first: it is the hard stop, and no wait helps a rate limit while it holds.
local outcome, failed = 0, 0
if monthly_budget and monthly + cost > monthly_budget then
  outcome = 2
elseif lifetime_budget and lifetime + cost > lifetime_budget then
  outcome = 3
else
  if max_in_flight and redis.call('ZCARD', KEYS[3]) >= max_in_flight then
    failed = failed + 1
  end
  if rpm_cap and rpm_level < 1 then
    failed = failed + 2
  end
  if tpm_cap and tpm_level < tokens then
    failed = failed + 4
  end
  if failed > 0 then
    outcome = 4
  end
end

if outcome == 0 then
  if rpm_cap then
    rpm_level = math.min(rpm_level - 1, rpm_cap)
  end
  if tpm_cap then
    tpm_level = math.min(tpm_level - tokens, tpm_cap)
  end
  local deadline = now + tonumber(ARGV[12])
  redis.call('ZADD', KEYS[3], fmt_int(deadline), ARGV[4])
  monthly = add(month_key, ARGV[6])
  redis.call('EXPIRE', month_key, ARGV[14])
  lifetime = add(KEYS[4], ARGV[6])
  redis.call('HSET', KEYS[6], 'tokens', ARGV[5], 'cost', ARGV[6], 'month', month,
    'deadline', fmt_int(deadline), 'expired', '0')
  redis.call('PEXPIRE', KEYS[6], ARGV[13])
end

-- Refilled buckets are written even on a refusal, as the in-process store does (a
-- lowered limit caps the stored level).
local tpm, rpm = '', ''
if rpm_cap then
  store_bucket(KEYS[2], rpm_cap, rpm_level, rpm_at)
  rpm = fmt_float(rpm_level)
end
if tpm_cap then
  store_bucket(KEYS[1], tpm_cap, tpm_level, tpm_at)
  tpm = fmt_float(tpm_level)
end
return {outcome, expired, now, tpm, rpm, monthly, lifetime, failed}

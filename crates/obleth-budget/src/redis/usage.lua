-- usage: a tenant's standing (memory.rs `usage`). Expires its dangling reservations;
-- the windows are refilled for reading only, never written.
--
-- KEYS: 1 tpm bucket, 2 rpm bucket, 3 in-flight set, 4 lifetime spend, 5 expired counter
-- ARGV: 1 now ms ('' = Redis TIME), 2 month key prefix, 3 record key prefix,
--       4 tpm, 5 rpm ('' = none)
-- Returns {expired now, now, tpm level, rpm level, in flight, YYYY-MM, monthly spent,
-- lifetime spent, expired total}. Spend and counters are returned as Redis stored them.

local now = clock(ARGV[1])
local expired = expire(KEYS[3], KEYS[5], ARGV[3], now)
local month = month_of(now)
local tpm_cap, rpm_cap = opt(ARGV[4]), opt(ARGV[5])
return {
  expired,
  now,
  read_level(KEYS[1], tpm_cap, now),
  read_level(KEYS[2], rpm_cap, now),
  redis.call('ZCARD', KEYS[3]),
  month,
  redis.call('GET', ARGV[2] .. month) or '0',
  redis.call('GET', KEYS[4]) or '0',
  redis.call('GET', KEYS[5]) or '0',
}

-- Shared by every budget script: redis.rs prepends this file to each of them.
--
-- Lua numbers are doubles: integers (milliseconds, token counts, money in nanos) are
-- exact up to 2^53. Numbers handed to redis.call are formatted here explicitly, because
-- Redis would format them with "%.14g" and lose digits.

local MINUTE_MS = 60000
local DAY_MS = 86400000

local function fmt_int(x)
  return string.format('%.0f', x)
end

-- Round-trips a double exactly.
local function fmt_float(x)
  return string.format('%.17g', x)
end

-- An optional number argument: '' is "no limit".
local function opt(arg)
  if arg == nil or arg == '' then
    return nil
  end
  return tonumber(arg)
end

-- Milliseconds since the epoch: the caller's clock if it passed one (tests), else the
-- Redis server's, so that every pod reads one clock.
local function clock(arg)
  if arg ~= nil and arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- `YYYY-MM` (UTC) of an instant: calendar.rs `civil_from_days`, with integer division
-- spelled math.floor (every operand here is non-negative after the era split).
local function month_of(now)
  local z = math.floor(now / DAY_MS) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m
  if mp < 10 then
    m = mp + 3
  else
    m = mp - 9
  end
  if m <= 2 then
    y = y + 1
  end
  return string.format('%04d-%02d', y, m)
end

-- bucket.rs `refilled`: the bucket's level and time at `now`; a missing bucket is full.
local function bucket(key, cap, now)
  local v = redis.call('HMGET', key, 'level', 'at')
  if not v[1] then
    return cap, now
  end
  local level, at = tonumber(v[1]), tonumber(v[2])
  local elapsed = now - at
  if elapsed < 0 then
    elapsed = 0
  end
  level = math.min(level + elapsed * cap / MINUTE_MS, cap)
  if now > at then
    at = now
  end
  return level, at
end

-- A bucket's refilled level for reading ('' without that limit), formatted for the reply.
local function read_level(key, cap, now)
  if not cap then
    return ''
  end
  return fmt_float((bucket(key, cap, now)))
end

-- bucket.rs `reset_ms`: until the bucket is full again.
local function reset_ms(level, cap)
  if cap == 0 then
    return 0
  end
  return math.ceil(math.max(cap - level, 0) * MINUTE_MS / cap)
end

-- Writes a bucket. It expires a minute after it would be full again: by then it is
-- full at any capacity, which is what a missing bucket reads as.
local function store_bucket(key, cap, level, at)
  redis.call('HSET', key, 'level', fmt_float(level), 'at', fmt_int(at))
  redis.call('PEXPIRE', key, fmt_int(reset_ms(level, cap) + MINUTE_MS))
end

-- INCRBY that saturates like i64::saturating_add instead of failing half-way through a
-- script (a script's earlier writes are not rolled back). `delta` is an integer string.
local function add(key, delta)
  local r = redis.pcall('INCRBY', key, delta)
  if type(r) == 'table' and r.err then
    if not string.find(r.err, 'overflow', 1, true) then
      return error(r)
    end
    if tonumber(delta) > 0 then
      r = '9223372036854775807'
    else
      r = '-9223372036854775808'
    end
    redis.call('SET', key, r, 'KEEPTTL')
    return tonumber(r)
  end
  return r
end

-- memory.rs `expire`: frees the slots of the tenant's reservations whose deadline has
-- passed, marks their records expired (a late reconcile must not free a slot twice) and
-- counts them. Returns how many expired.
local function expire(inflight_key, expired_key, record_prefix, now)
  local due = redis.call('ZRANGEBYSCORE', inflight_key, '-inf', fmt_int(now))
  local n = #due
  if n == 0 then
    return 0
  end
  for i = 1, n do
    local record = record_prefix .. due[i]
    if redis.call('EXISTS', record) == 1 then
      redis.call('HSET', record, 'expired', '1')
    end
  end
  redis.call('ZREMRANGEBYSCORE', inflight_key, '-inf', fmt_int(now))
  redis.call('INCRBY', expired_key, n)
  return n
end


-- Takes one slot of a tool's sliding-window rate limit, shared by every
-- worker: at most ARGV[1] calls in any window of ARGV[2] ms, by Redis's
-- clock so workers with skewed clocks agree. One key, so it works on Redis
-- Cluster (the key carries the tool as hash tag).
--
-- Slot: one key, `toolq:ratelimit:{<tool>}`.
-- KEYS[1] the tool's rate-limit sorted set (member = call token, score = ms)
-- ARGV[1] most calls per window
-- ARGV[2] window in milliseconds
-- ARGV[3] a token unique to this call
-- Returns {1, now} (ms) when the call may go ahead (and records it), or
-- {0, free_at}: the Redis time in ms at which the oldest call in the window
-- leaves it, before which no slot can open.

local t = redis.call('TIME')
-- Microsecond precision: whole milliseconds would let max + 1 calls into a
-- window that is a fraction of a millisecond short.
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local max = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < max then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, math.floor(now)}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, math.ceil(tonumber(oldest[2]) + window)}

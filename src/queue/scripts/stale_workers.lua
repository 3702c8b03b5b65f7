-- Lists workers whose heartbeat is older than the timeout, by Redis's clock,
-- and how soon the next one will be: the reaper sleeps no longer than that,
-- so a dead worker is handled the moment its heartbeat crosses the limit
-- rather than up to a reaper period later.
--
-- Slot: one key.
-- KEYS[1] workers sorted set
-- ARGV[1] heartbeat timeout in ms
-- ARGV[2] most ids returned
-- ARGV[3] optional: only heartbeats younger than this many ms count (a set
--         that keeps gone workers for a while, like the tool catalog's)
-- Returns {worker ids, ms until the oldest other heartbeat is past the
-- timeout (-1 when there is none)}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cutoff = now - tonumber(ARGV[1])
local oldest = '-inf'
if ARGV[3] then
  oldest = now - tonumber(ARGV[3])
end
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], oldest, '(' .. cutoff,
  'LIMIT', 0, tonumber(ARGV[2]))
local next = redis.call('ZRANGEBYSCORE', KEYS[1], cutoff, '+inf', 'WITHSCORES',
  'LIMIT', 0, 1)
local wait = -1
if #next == 2 then
  wait = math.floor(tonumber(next[2]) - cutoff)
end
return {stale, wait}

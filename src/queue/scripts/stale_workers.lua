-- Lists workers whose heartbeat is older than the timeout, by Redis's clock.
--
-- KEYS[1] workers sorted set
-- ARGV[1] heartbeat timeout in ms
-- ARGV[2] most ids returned
-- Returns worker ids.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])),
  'LIMIT', 0, tonumber(ARGV[2]))

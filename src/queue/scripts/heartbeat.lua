-- Registers a worker in a queue's worker set, or refreshes its heartbeat,
-- with Redis's clock as the score.
--
-- Slot: one key.
-- KEYS[1] workers sorted set
-- ARGV[1] worker id
-- ARGV[2] 'register' on start-up, 'beat' afterwards
-- Returns the Redis time in ms, or -1 on 'beat' when the worker had been
-- declared dead and its jobs recovered: the caller must drop what it runs.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == 'beat' then
  -- XX: a worker declared dead is not put back. CH counts a changed score;
  -- an unchanged one (two beats in the same ms) is asked about.
  if redis.call('ZADD', KEYS[1], 'XX', 'CH', now, ARGV[1]) == 0
      and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    return -1
  end
  return now
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
return now

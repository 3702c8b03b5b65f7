-- Stores the queue gauges read by the worker whose turn it was (turn.lua),
-- for every other worker of the queue to publish as they are.
--
-- Slot: one key.
-- KEYS[1] fleet hash of the queue
-- ARGV[1] pending, ARGV[2] active, ARGV[3] delayed, ARGV[4] dead, ARGV[5] live
-- ARGV[6] ms the hash is kept
-- Returns the Redis time in ms stored as `at`.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'pending', ARGV[1], 'active', ARGV[2],
  'delayed', ARGV[3], 'dead', ARGV[4], 'live', ARGV[5], 'at', now)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[6]))
return now

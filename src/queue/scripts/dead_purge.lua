-- Removes dead jobs that died before a cut-off judged by Redis's clock (the
-- clock that stamped them), or all of them.
--
-- Slot: every key carries the queue's hash tag {Q}: one slot, one node of a
-- cluster.
-- KEYS[1] dead sorted set
-- KEYS[2] stats hash of the queue: its 'dead_bytes' (the dead set's size,
--         see dead_set.lua) is dropped, and summed again by the next burial
-- ARGV[1] age in milliseconds: entries older than this are removed; -1
--         removes every entry
-- Returns how many entries were removed.

local age = tonumber(ARGV[1])
redis.call('HDEL', KEYS[2], 'dead_bytes')
if age < 0 then
  local n = redis.call('ZCARD', KEYS[1])
  redis.call('DEL', KEYS[1])
  return n
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - age))

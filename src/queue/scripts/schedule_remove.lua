-- Removes a periodic schedule: its hash and its place among the queue's
-- schedules, together, so no worker ticks it after this returns. (Its entry
-- in the global index, in another slot, is dropped after.)
--
-- Slot: every key carries the queue's hash tag {Q}: one slot, one node of a
-- cluster.
-- KEYS[1] the schedule's hash
-- KEYS[2] the queue's schedules sorted set
-- ARGV[1] the schedule's name
-- Returns 1 when it existed, 0 otherwise.

local kind = redis.call('TYPE', KEYS[2])['ok']
if kind ~= 'zset' and kind ~= 'none' then
  return redis.error_reply('WRONGTYPE cannot write ' .. KEYS[2] .. ': it holds a ' .. kind)
end
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])

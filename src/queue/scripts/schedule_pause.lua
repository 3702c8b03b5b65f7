-- Pauses or resumes a periodic schedule. A paused one leaves the queue's
-- schedules set, so no worker polls it; resuming puts it back at the next
-- tick the caller computed from Redis's time (ticks that fell while it was
-- paused are not run).
--
-- Slot: every key carries the queue's hash tag {Q}: one slot, one node of a
-- cluster.
-- KEYS[1] the schedule's hash
-- KEYS[2] the queue's schedules sorted set (score = next tick, unix s)
-- ARGV[1] the schedule's name
-- ARGV[2] 'pause' or 'resume'
-- ARGV[3] with 'resume': the next tick (unix s)
-- A resume publishes a wake-up (wake.lua): its tick may be earlier than any
-- the workers wait for.
-- Returns 'ok', 'gone' (no such schedule) or, on resume, 'stale' when
-- ARGV[3] is not after the last tick enqueued.

for _, k in ipairs({{KEYS[1], 'hash'}, {KEYS[2], 'zset'}}) do
  local kind = redis.call('TYPE', k[1])['ok']
  if kind ~= k[2] and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE cannot write ' .. k[1] .. ': it holds a ' .. kind)
  end
end

local state = redis.call('HMGET', KEYS[1], 'version', 'last_tick')
if not state[1] then
  return 'gone'
end
if ARGV[2] == 'pause' then
  redis.call('HSET', KEYS[1], 'paused', 1)
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 'ok'
end
local next_tick = tonumber(ARGV[3])
if state[2] and next_tick <= tonumber(state[2]) then
  return 'stale'
end
redis.call('HDEL', KEYS[1], 'paused')
redis.call('HSET', KEYS[1], 'next', ARGV[3])
redis.call('ZADD', KEYS[2], next_tick, ARGV[1])
wake('schedules', KEYS[2])
return 'ok'

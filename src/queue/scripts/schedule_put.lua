-- Writes a periodic schedule's definition. An identical definition changes
-- nothing (every worker start writes the configured schedules: their next
-- tick must not move). A new or different one gets a new version, so a
-- worker still computing from the old one loses its compare-and-set in
-- schedule_tick.lua, and the next tick the caller computed from it. A
-- paused schedule stays paused.
--
-- Slot: every key carries the queue's hash tag {Q}: one slot, one node of a
-- cluster.
-- KEYS[1] the schedule's hash
-- KEYS[2] the queue's schedules sorted set (score = next tick, unix s)
-- ARGV[1] the schedule's name
-- ARGV[2] the definition (JSON)
-- ARGV[3] its next tick (unix s), computed by the caller from Redis's time
-- ARGV[4] where the definition comes from: 'config' or 'cli'
-- Publishes a wake-up (wake.lua) when the schedule is active: its tick may
-- be earlier than any the workers wait for.
-- Returns {outcome, version}: outcome 'created', 'updated', 'unchanged', or
-- 'stale' when ARGV[3] is not after the last tick enqueued (the caller
-- computes again from it).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

for _, k in ipairs({{KEYS[1], 'hash'}, {KEYS[2], 'zset'}}) do
  local kind = redis.call('TYPE', k[1])['ok']
  if kind ~= k[2] and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE cannot write ' .. k[1] .. ': it holds a ' .. kind)
  end
end

local state = redis.call('HMGET', KEYS[1], 'def', 'version', 'last_tick', 'paused', 'source')
if state[1] == ARGV[2] and state[5] == ARGV[4] then
  return {'unchanged', tonumber(state[2])}
end
local next_tick = tonumber(ARGV[3])
if state[3] and next_tick <= tonumber(state[3]) then
  return {'stale', tonumber(state[2] or 0)}
end

local outcome = 'updated'
if not state[2] then
  outcome = 'created'
  redis.call('HSET', KEYS[1], 'created_at', now)
end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'def', ARGV[2], 'next', ARGV[3], 'source', ARGV[4], 'updated_at', now)
if not state[4] then
  redis.call('ZADD', KEYS[2], next_tick, ARGV[1])
  wake('schedules', KEYS[2])
end
return {outcome, version}

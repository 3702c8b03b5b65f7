-- Decides one tick of a periodic schedule: enqueues its job (or, for ticks
-- missed past the grace under `skip`, nothing) and moves the schedule to its
-- next tick, in one step. A compare-and-set on the stored next tick and the
-- definition's version, judged by Redis's clock: however many workers race
-- for a tick, exactly one gets 'ok' and the others 'taken'; a worker that
-- computed from a definition changed since gets 'changed'.
--
-- Slot: every key carries the queue's hash tag {Q}: one slot, one node of a
-- cluster.
-- KEYS[1] the schedule's hash (see keys.rs: def, version, next, paused, last_*)
-- KEYS[2] the queue's schedules sorted set (score = next tick, unix s)
-- KEYS[3] the queue's pending list
-- ARGV[1] the schedule's name (its member of KEYS[2])
-- ARGV[2] the definition version the caller computed from
-- ARGV[3] the due tick the caller saw (unix s): must still be `next`
-- ARGV[4] the tick whose job to enqueue (unix s), or 0 for none
-- ARGV[5] that job's payload
-- ARGV[6] that job's id
-- ARGV[7] the schedule's new next tick (unix s), after ARGV[3] and ARGV[4]
-- Returns {outcome, now in unix ms}; outcome is 'ok', 'taken' (next is no
-- longer ARGV[3]), 'changed' (another version), 'paused', 'gone' (no such
-- schedule) or 'early' (the tick is not due yet by Redis's clock).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

for _, k in ipairs({{KEYS[1], 'hash'}, {KEYS[2], 'zset'}, {KEYS[3], 'list'}}) do
  local kind = redis.call('TYPE', k[1])['ok']
  if kind ~= k[2] and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE cannot write ' .. k[1] .. ': it holds a ' .. kind)
  end
end

local state = redis.call('HMGET', KEYS[1], 'version', 'next', 'paused')
if not state[1] then
  return {'gone', now}
end
if state[1] ~= ARGV[2] then
  return {'changed', now}
end
if state[3] then
  return {'paused', now}
end
if state[2] ~= ARGV[3] then
  return {'taken', now}
end
local due = tonumber(ARGV[3])
local tick = tonumber(ARGV[4])
local next_tick = tonumber(ARGV[7])
if now < due * 1000 or now < tick * 1000 then
  return {'early', now}
end
if next_tick <= due or next_tick <= tick then
  return redis.error_reply('ERR schedule_tick: the next tick ' .. ARGV[7] .. ' is not after the tick decided')
end

if tick > 0 then
  redis.call('LPUSH', KEYS[3], ARGV[5])
  redis.call('HSET', KEYS[1], 'last_tick', ARGV[4], 'last_id', ARGV[6], 'last_at', now)
end
redis.call('HSET', KEYS[1], 'next', ARGV[7])
redis.call('ZADD', KEYS[2], next_tick, ARGV[1])
return {'ok', now}

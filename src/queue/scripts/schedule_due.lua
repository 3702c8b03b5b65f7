-- Which of a queue's periodic schedules have a tick due, by Redis's clock.
-- Read only: the workers serving the queue call it to know whom to tick and
-- how long they may sleep.
--
-- Slot: one key.
-- KEYS[1] the queue's schedules sorted set (score = next tick, unix s)
-- ARGV[1] most names to return
-- Returns {now in unix ms, the earliest next tick (unix s) or -1 when the
-- set is empty, the names whose tick is due...}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {now, -1}
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #head > 0 then
  out[2] = tonumber(head[2])
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', math.floor(now / 1000),
    'LIMIT', 0, tonumber(ARGV[1]))
  for _, name in ipairs(due) do
    out[#out + 1] = name
  end
end
return out

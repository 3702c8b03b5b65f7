-- Moves due jobs from the delayed set to the back of pending, atomically, so
-- exactly one worker promotes each job however many race for it. Pushed
-- before removed: if pending cannot be written, the jobs stay delayed.
--
-- Slot: every key carries the queue's hash tag {Q}: one slot, one node of a
-- cluster.
-- KEYS[1] delayed sorted set
-- KEYS[2] pending list
-- ARGV[1] most jobs to move in one call
-- Returns {moved, ms until the next job is due or -1 when none is left}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #due > 0 then
  redis.call('LPUSH', KEYS[2], unpack(due))
  redis.call('ZREM', KEYS[1], unpack(due))
end
local next_due = -1
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #head > 0 then
  next_due = math.max(0, tonumber(head[2]) - now)
end
return {#due, next_due}

-- Enqueues a chunk of jobs that needs more than a plain LPUSH: some carry a
-- unique key, taken with SET NX so a job whose key is held by a job still
-- pending, delayed or running is skipped as a duplicate; and/or pending is
-- capped (back-pressure), so the chunk stops where pending is full and the
-- producer waits before sending the rest. Jobs keep their input order.
--
-- Slot: every key carries the queue's hash tag {Q}: one slot, one node of a
-- cluster.
-- KEYS[1]     pending list
-- KEYS[2]     delayed sorted set
-- KEYS[2 + j] unique lock j (j = 1..), referenced by items below
-- ARGV[1]     most jobs pending may hold; 0 for no cap
-- ARGV[2]     unique lock TTL in seconds (a safety net: the worker releases
--             the lock when the job succeeds or dies)
-- ARGV[3]     N, the number of items
-- ARGV, per item i, starting at b = 4 + (i - 1) * 4:
--   b     payload
--   b + 1 due time in unix ms for a scheduled job, 0 to run now
--   b + 2 index j of its unique lock, 0 for none
--   b + 3 job id (the lock's value, so only this job releases it)
-- Publishes a wake-up (wake.lua) when a scheduled job is the delayed set's
-- new earliest.
-- Returns {taken, duplicates...}: the first `taken` items were handled (all
-- N unless pending reached the cap), and the 1-based indexes of those
-- skipped as duplicates.

-- Checked before any lock is taken: a push failing after them would leave
-- unique keys held for jobs that were never enqueued.
for _, k in ipairs({{KEYS[1], 'list'}, {KEYS[2], 'zset'}}) do
  local t = redis.call('TYPE', k[1])['ok']
  if t ~= k[2] and t ~= 'none' then
    return redis.error_reply('WRONGTYPE cannot write ' .. k[1] .. ': it holds a ' .. t)
  end
end

local cap = tonumber(ARGV[1])
local room = 0
if cap > 0 then
  room = cap - redis.call('LLEN', KEYS[1])
end
local ttl = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local out = {0}
local push = {}
local taken = 0
local earliest = nil

for i = 1, n do
  local b = 4 + (i - 1) * 4
  local due = tonumber(ARGV[b + 1])
  if due == 0 and cap > 0 and room <= 0 then
    break
  end
  local j = tonumber(ARGV[b + 2])
  local fresh = true
  if j > 0 then
    fresh = redis.call('SET', KEYS[2 + j], ARGV[b + 3], 'NX', 'EX', ttl)
  end
  if not fresh then
    out[#out + 1] = i
  elseif due > 0 then
    redis.call('ZADD', KEYS[2], due, ARGV[b])
    if not earliest or due < earliest then earliest = due end
  else
    push[#push + 1] = ARGV[b]
    room = room - 1
  end
  taken = i
end

-- LPUSH in slices: unpack() of a huge table would overflow Lua's stack.
for k = 1, #push, 500 do
  redis.call('LPUSH', KEYS[1], unpack(push, k, math.min(k + 499, #push)))
end
if earliest then
  wake_delayed(KEYS[2], earliest)
end
out[1] = taken
return out

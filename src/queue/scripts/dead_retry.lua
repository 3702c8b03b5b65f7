-- Moves dead jobs back to pending to run afresh (the caller has rewritten
-- each payload with its attempt count reset). An entry moves only if it is
-- still in the dead set, so two operators retrying at once do not run a job
-- twice. The job's stale "dead" result is deleted, and its unique lock, if
-- it has one, is taken again unless another job holds it.
--
-- Slot: every key carries the queue's hash tag {Q}: one slot, one node of a
-- cluster.
-- KEYS[1]          dead sorted set
-- KEYS[2]          pending list
-- KEYS[1 + 2i]     result key of item i (i = 1..N)
-- KEYS[2 + 2i]     unique lock of item i (its result key again when none)
-- KEYS[#KEYS]      stats hash of the queue: its 'dead_bytes' (the dead
--                  set's size, see dead_set.lua) loses each moved entry
-- ARGV[1]          unique lock TTL in seconds
-- ARGV, per item i, starting at b = 2 + (i - 1) * 4:
--   b     the dead entry, exactly as stored
--   b + 1 the job's new payload
--   b + 2 job id
--   b + 3 '1' if the job has a unique lock, '0' if not
-- Returns how many jobs were moved.

local n = (#ARGV - 1) / 4
local moved, freed = 0, 0
-- Read first (a stats key of the wrong type fails before any write). A set
-- of an earlier build has no byte count yet: the next burial sums it.
local bytes = redis.call('HGET', KEYS[#KEYS], 'dead_bytes')
for i = 1, n do
  local b = 2 + (i - 1) * 4
  -- Pushed before removed: if pending cannot be written, the entry stays.
  if redis.call('ZSCORE', KEYS[1], ARGV[b]) then
    redis.call('LPUSH', KEYS[2], ARGV[b + 1])
    redis.call('ZREM', KEYS[1], ARGV[b])
    redis.call('DEL', KEYS[1 + 2 * i])
    if ARGV[b + 3] == '1' then
      redis.call('SET', KEYS[2 + 2 * i], ARGV[b + 2], 'NX', 'EX', tonumber(ARGV[1]))
    end
    moved = moved + 1
    freed = freed + #ARGV[b]
  end
end
if bytes and freed > 0 then
  redis.call('HSET', KEYS[#KEYS], 'dead_bytes', math.max(0, tonumber(bytes) - freed))
end
return moved

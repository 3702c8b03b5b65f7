-- Settles a batch of finished jobs: marks each settled in this worker's
-- active hash (held.lua) and, only if it was still held, writes its result.
-- A job that is no longer ours (recovered by another worker while we were
-- cut off) is left alone: its new owner's outcome wins (fencing).
--
-- This is the hottest script: three ARGV per job, and the common case (a
-- success nobody waits on) needs no string parsing.
--
-- KEYS[1]        active hash of this worker
-- KEYS[2]        stats hash of the queue
-- KEYS[2 + i]    result key of item i (i = 1..N)
-- KEYS[2 + N + j] notification list j, referenced by items below
-- ARGV[1]        N
-- ARGV, per item i, starting at b = 2 + (i - 1) * 3:
--   b     the job's slot in the active hash
--   b + 1 meta: the result TTL in seconds (0 stores no result) for a success
--         nobody waits on; otherwise 'TTL|S|J|ID' with S '1' if the job
--         succeeded or '0' if it failed, J the index of its notification list
--         (0 for none) and ID the job id (pushed to that list)
--   b + 2 result JSON
-- Optional, after the items: M more ARGV, the indexes i of items that hold
-- a unique lock, whose lock keys are the last M KEYS in the same order. A
-- lock is released only if the item was ours and the lock still names the
-- job (after its TTL another job may have taken it).
-- Returns the 1-based indexes of stale items (usually none).

local n = tonumber(ARGV[1])
local stale = {}
local ok, failed = 0, 0
local notified = {}
local is_stale = {}
local ids = {}

for i = 1, n do
  local b = 2 + (i - 1) * 3
  if settle(KEYS[1], ARGV[b]) then
    local meta = ARGV[b + 1]
    local ttl = tonumber(meta)
    local succeeded, j = true, 0
    if not ttl then
      local t, s, jj, id = string.match(meta, '^(%d+)|([01])|(%d+)|(.*)$')
      ttl, succeeded, j = tonumber(t), s == '1', tonumber(jj)
      ids[i] = id
    end
    if ttl > 0 then
      redis.call('SETEX', KEYS[2 + i], ttl, ARGV[b + 2])
    end
    if succeeded then ok = ok + 1 else failed = failed + 1 end
    if j > 0 then
      local key = KEYS[2 + n + j]
      redis.call('RPUSH', key, ids[i])
      notified[key] = true
    end
  else
    stale[#stale + 1] = i
    is_stale[i] = true
  end
end

local locks = #ARGV - (1 + n * 3)
for k = 1, locks do
  local i = tonumber(ARGV[1 + n * 3 + k])
  local key = KEYS[#KEYS - locks + k]
  if not is_stale[i] and redis.call('GET', key) == ids[i] then
    redis.call('DEL', key)
  end
end

save_marks(KEYS[1])
if ok > 0 then redis.call('HINCRBY', KEYS[2], 'processed', ok) end
if failed > 0 then redis.call('HINCRBY', KEYS[2], 'failed', failed) end
for key in pairs(notified) do
  redis.call('EXPIRE', key, 86400)
end
return stale

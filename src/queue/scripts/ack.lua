-- Settles a batch of finished jobs: removes each from this worker's active
-- hash and, only if it was still there, writes its result. A job that is no
-- longer ours (recovered by another worker while we were cut off) is left
-- alone: its new owner's outcome wins (fencing).
--
-- KEYS[1]        active hash of this worker
-- KEYS[2]        stats hash of the queue
-- KEYS[2 + i]    result key of item i (i = 1..N)
-- KEYS[2 + N + j] notification list j, referenced by items below
-- ARGV[1]        N
-- ARGV, per item i, starting at b = 2 + (i - 1) * 6:
--   b     fetch sequence number (field in the active hash)
--   b + 1 result TTL in seconds; 0 stores no result
--   b + 2 result JSON
--   b + 3 '1' if the job succeeded, '0' if it failed
--   b + 4 index j of its notification list, 0 for none
--   b + 5 job id (pushed to the notification list)
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

for i = 1, n do
  local b = 2 + (i - 1) * 6
  if redis.call('HDEL', KEYS[1], ARGV[b]) == 1 then
    local ttl = tonumber(ARGV[b + 1])
    if ttl > 0 then
      redis.call('SET', KEYS[2 + i], ARGV[b + 2], 'EX', ttl)
    end
    if ARGV[b + 3] == '1' then ok = ok + 1 else failed = failed + 1 end
    local j = tonumber(ARGV[b + 4])
    if j > 0 then
      local key = KEYS[2 + n + j]
      redis.call('RPUSH', key, ARGV[b + 5])
      notified[key] = true
    end
  else
    stale[#stale + 1] = i
    is_stale[i] = true
  end
end

local locks = #ARGV - (1 + n * 6)
for k = 1, locks do
  local i = tonumber(ARGV[1 + n * 6 + k])
  local key = KEYS[#KEYS - locks + k]
  if not is_stale[i] and redis.call('GET', key) == ARGV[2 + (i - 1) * 6 + 5] then
    redis.call('DEL', key)
  end
end

if ok > 0 then redis.call('HINCRBY', KEYS[2], 'processed', ok) end
if failed > 0 then redis.call('HINCRBY', KEYS[2], 'failed', failed) end
for key in pairs(notified) do
  redis.call('EXPIRE', key, 86400)
end
return stale

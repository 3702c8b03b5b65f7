-- Settles a batch of finished jobs: marks each settled in this worker's
-- active hash (held.lua) and, only if it was still held, writes its result.
-- A job that is no longer ours (recovered by another worker while we were
-- cut off) is left alone: its new owner's outcome wins (fencing).
--
-- This is the hottest script, shaped by measurement: every argument costs
-- Redis a parse and a copy, and every number converted between Lua and
-- Redis a strtod or sprintf. So a plain item (a success nobody waits on,
-- holding no lock, with the call's shared TTL) costs one ARGV, its result,
-- and four bytes of a packed string naming its slot; anything else about an
-- item is listed after the items.
--
-- KEYS[1]         active hash of this worker
-- KEYS[2]         stats hash of the queue
-- KEYS[2 + i]     result key of item i (i = 1..N)
-- KEYS[2 + N + j] notification list j, referenced by metas below
-- ARGV[1]         N
-- ARGV[2]         result TTL in seconds of plain items ('0' stores no result)
-- ARGV[3]         B, the batches the items belong to, then their B numbers
-- ARGV[4 + B]     the items' slots, 4 bytes each: the 1-based position of
--                 the item's batch among the B (16 bits, big-endian), then
--                 its 0-based index in that batch (16 bits, big-endian)
-- ARGV[4 + B + i] result JSON of item i
-- ARGV[c = 5 + B + N]  M, the items that are not plain, then M pairs:
--   i, meta 'TTL|S|J|ID': S '1' if the job succeeded or '0' if it failed, J
--   the index of its notification list (0 for none) and ID the job id
--   (pushed to that list, and the value its unique lock must hold)
-- Last, optionally: L more ARGV, the indexes i of items that hold a unique
-- lock, whose lock keys are the last L KEYS in the same order. A lock is
-- released only if the item was ours and the lock still names the job
-- (after its TTL another job may have taken it).
-- Returns the 1-based indexes of stale items (usually none).

local n = tonumber(ARGV[1])
local shared_ttl = ARGV[2]
local nb = tonumber(ARGV[3])
local packed = ARGV[4 + nb]
local res = 4 + nb
local c = 5 + nb + n
local metas = {}
for k = 1, tonumber(ARGV[c]) do
  metas[tonumber(ARGV[c + 2 * k - 1])] = ARGV[c + 2 * k]
end

local stale = {}
local ok, failed = 0, 0
local notified = {}
local is_stale = {}
local ids = {}

for i = 1, n do
  local b1, b2, i1, i2 = string.byte(packed, 4 * i - 3, 4 * i)
  if settle(KEYS[1], ARGV[3 + b1 * 256 + b2], i1 * 256 + i2 + 1) then
    local ttl, succeeded, j = shared_ttl, true, 0
    local meta = metas[i]
    if meta then
      local t, s, jj, id = string.match(meta, '^(%d+)|([01])|(%d+)|(.*)$')
      ttl, succeeded, j = t, s == '1', tonumber(jj)
      ids[i] = id
    end
    if ttl ~= '0' then
      redis.call('SETEX', KEYS[2 + i], ttl, ARGV[res + i])
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

local first_lock = c + 1 + 2 * tonumber(ARGV[c])
local locks = #ARGV - first_lock + 1
for k = 1, locks do
  local i = tonumber(ARGV[first_lock + k - 1])
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

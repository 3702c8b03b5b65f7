-- Buries a job in the dead set (out of attempts, permanent error, or not a
-- valid job at all) and trims the set by age, count and bytes (dead_set.lua),
-- so it cannot grow without bound.
--
-- Everything that can fail is checked before the first write, so the
-- script either buries the job or leaves it held: Redis keeps the writes a
-- failing script made before its error. A key only this job names (its
-- notification list, its unique lock) that holds the wrong type is skipped,
-- not fatal: the burial must not depend on the job's own bad keys. So is a
-- follow-up's pending list of the wrong type (the follow-up is not pushed,
-- and `skipped` says so): a queue someone broke must not wedge the burial.
--
-- Slot: every key carries the queue's hash tag {Q} (one slot), except the
-- follow-up's pending list, which may be another queue's: on a cluster a
-- follow-up bound for another slot is pushed just before this call and left
-- out of it (queue/cross_slot.rs). A batch callback's list (batch_callback.lua)
-- is the batch's own queue on a cluster (arming one elsewhere is refused).
-- KEYS[1] active hash of this worker
-- KEYS[2] dead sorted set
-- KEYS[3] result key of the job (any key of the queue when there is no id)
-- KEYS[4] stats hash of the queue
-- KEYS[5..]   optional, in this order, each present when its ARGV says so:
--             the notification list and the batch's callback hash
--             (batch_callback.lua), the follow-up's pending list, the job's
--             unique lock
-- ARGV[1] the job's slot in the active hash (held.lua)
-- ARGV[2] dead entry JSON without its closing: '{"job":...,"error":{...},...,"died_at":'
--         the script appends the time of death (Redis clock, ms) and '}';
--         empty for a job an operator cancelled: it is settled the same
--         way but not added to the dead set, and counted as 'cancelled'
-- ARGV[3] result TTL in seconds; 0 stores no result
-- ARGV[4] result JSON (status "dead")
-- ARGV[5] most entries kept in the dead set
-- ARGV[6] oldest entry kept, in milliseconds of age
-- ARGV[7] job id for the notification list (and the lock's expected value)
-- ARGV[8] most bytes of entries kept in the dead set
-- ARGV[9]  '1' when a notification list and callback hash are given,
--          else '0'
-- ARGV[10] '1' when the unique lock is given (released if it still names
--          the job), else '0'
-- ARGV[11] the on_failure follow-up's payload, pushed onto its pending
--          list with the burial; '' for none
-- Returns {1, skipped, trimmed} when buried (skipped: '' or why a key of the
-- job's own was not written; trimmed: entries the count and byte caps
-- dropped), or {0, '', 0} when the job was no longer ours (stale, nothing
-- written).

if not settle_slot(KEYS[1], ARGV[1]) then
  return {0, '', 0}
end
expect_type(KEYS[2], 'zset')
expect_type(KEYS[4], 'hash')
local skipped = {}
local next_key = 5
local function optional(given)
  if not given then return nil end
  next_key = next_key + 1
  return KEYS[next_key - 1]
end
local list_key = optional(ARGV[9] == '1')
local callback_key = optional(ARGV[9] == '1')
local follow_key = optional(ARGV[11] ~= '')
local lock_key = optional(ARGV[10] == '1')

-- A key only this job names, of the wrong type: skipped, and said why.
local function writable(key, kind)
  local t = redis.call('TYPE', key)['ok']
  if t == kind or t == 'none' then return true end
  skipped[#skipped + 1] = 'cannot write ' .. key .. ': it holds a ' .. t
  return false
end

local release = false
if lock_key then
  local holder = redis.pcall('GET', lock_key)
  if type(holder) == 'table' and holder.err then
    skipped[#skipped + 1] = 'cannot write ' .. lock_key .. ': it holds a ' ..
      redis.call('TYPE', lock_key)['ok']
  elseif holder == ARGV[7] then
    release = true
  end
end
local notify = list_key and writable(list_key, 'list')
local follow = follow_key and writable(follow_key, 'list')
local count = notify and callback_armed(callback_key)

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cancelled = ARGV[2] == ''
local trimmed = 0
if not cancelled then
  trimmed = dead_add(KEYS[2], KEYS[4], ARGV[2] .. now .. '}', now,
    tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[8]))
end
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('SET', KEYS[3], ARGV[4], 'EX', ttl)
end
redis.call('HINCRBY', KEYS[4], cancelled and 'cancelled' or 'dead', 1)
if release then
  redis.call('DEL', lock_key)
end
if notify then
  redis.call('RPUSH', list_key, ARGV[7])
  redis.call('EXPIRE', list_key, 86400)
end
if follow then
  redis.call('LPUSH', follow_key, ARGV[11])
end
if count then
  callback_count(callback_key, cancelled and 'cancelled' or 'dead', 1)
end
save_marks(KEYS[1])
return {1, table.concat(skipped, '; '), trimmed}

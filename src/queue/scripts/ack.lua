-- Settles a batch of succeeded jobs: marks each settled in this worker's
-- active hash (held.lua) and, only if it was still held, writes its result.
-- A job that is no longer ours (recovered by another worker while we were
-- cut off) is left alone: its new owner's outcome wins (fencing).
--
-- Redis keeps a script's writes made before an error, so the script first
-- does everything that can fail without writing anything (phase 1), then
-- writes (phase 2) starting with the one write that can still fail (the
-- stats hash, a key of the whole queue). A key only one job names (its
-- notification list, its unique lock) that holds the wrong type fails that
-- job alone: it stays held and is reported, so the worker buries it with an
-- error naming the key, and every other job of the call is settled.
--
-- This is the hottest script, shaped by measurement: every argument costs
-- Redis a parse and a copy, and every number converted between Lua and
-- Redis a strtod or sprintf. So a plain item (nobody waits on it, it holds
-- no lock, its TTL is the call's shared one) costs one ARGV, its result,
-- and four bytes of a packed string naming its slot; anything else about an
-- item is listed after the items.
--
-- Slot: every key carries the queue's hash tag {Q} (one slot), except a
-- follow-up's pending list, which may be another queue's: on a cluster a
-- follow-up bound for another slot is pushed just before this call and left
-- out of it (queue/cross_slot.rs). A batch callback's list (batch_callback.lua)
-- is the batch's own queue on a cluster (arming one elsewhere is refused).
-- KEYS[1]         active hash of this worker
-- KEYS[2]         stats hash of the queue
-- KEYS[2 + i]     result key of item i (i = 1..N)
-- KEYS[2 + N + j] notification list j, referenced by metas below
-- then           the batch callback hash of each notification list j, in
--                 the same order (when ARGV[g] below is not 0), then the
--                 follow-ups' pending lists, referenced below by index
-- ARGV[1]         N
-- ARGV[2]         result TTL in seconds of plain items ('0' stores no result)
-- ARGV[3]         B, the batches the items belong to, then their B numbers
-- ARGV[4 + B]     the items' slots, 4 bytes each: the 1-based position of
--                 the item's batch among the B (16 bits, big-endian), then
--                 its 0-based index in that batch (16 bits, big-endian)
-- ARGV[4 + B + i] result JSON of item i
-- ARGV[c = 5 + B + N]  M, the items that are not plain, then M pairs:
--   i, meta 'TTL|J|ID': J the index of its notification list (0 for none)
--   and ID the job id (pushed to that list, and the value its unique lock
--   must hold)
-- ARGV[f = c + 1 + 2M]  F, the items' follow-ups (on_success), then F
--   triples: i, k the index in KEYS of the pending list the follow-up goes
--   to (it may be another queue's), and the follow-up's payload, pushed
--   only if item i is settled by this call. An item with a follow-up is
--   never plain.
-- ARGV[g = f + 1 + 3F]  B2, the number of batch callback hashes in KEYS
--   (as many as notification lists, or 0): each settled job of a batch is
--   counted into its hash, which fires the callback on the batch's last
--   job (batch_callback.lua)
-- Last, optionally: L more ARGV, the indexes i of items that hold a unique
-- lock, whose lock keys are the last L KEYS in the same order. A lock is
-- released only if the item was ours and the lock still names the job
-- (after its TTL another job may have taken it).
-- Returns {stale, unwritable}: the 1-based indexes of items that were no
-- longer ours (usually none), and {i, why} pairs for items left held
-- because a key of theirs cannot be written (why names the key).

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

-- Phase 1: reads only. Plain items cost no table of their own here.
local stale, unwritable = {}, {}
local out = {}        -- item i -> true when nothing is written for it
local where = {}      -- non-plain item i -> its batch and index
local ttls, lists, ids, js = {}, {}, {}, {}
local list_type = {}  -- notification list -> its type, checked once a call

local function refuse(i, key, what)
  unsettle(where[i][1], where[i][2])
  out[i] = true
  unwritable[#unwritable + 1] = {i, 'cannot write ' .. key .. ': it holds a ' .. what}
end

for i = 1, n do
  local b1, b2, i1, i2 = string.byte(packed, 4 * i - 3, 4 * i)
  local b, idx = ARGV[3 + b1 * 256 + b2], i1 * 256 + i2 + 1
  if settle(KEYS[1], b, idx) then
    local meta = metas[i]
    if meta then
      where[i] = {b, idx}
      local t, j, id = string.match(meta, '^(%d+)|(%d+)|(.*)$')
      ttls[i], ids[i] = t, id
      if j ~= '0' then
        local key = KEYS[2 + n + tonumber(j)]
        local kind = list_type[key]
        if not kind then
          kind = redis.call('TYPE', key)['ok']
          list_type[key] = kind
        end
        if kind == 'none' or kind == 'list' then
          lists[i] = key
          js[i] = tonumber(j)
        else
          refuse(i, key, kind)
        end
      end
    end
  else
    stale[#stale + 1] = i
    out[i] = true
  end
end

-- A follow-up's pending list of the wrong type keeps its parent held,
-- like any key of the job's own: the worker buries the parent instead.
local f = c + 1 + 2 * tonumber(ARGV[c])
local follow_ups = tonumber(ARGV[f])
for k = 1, follow_ups do
  local i = tonumber(ARGV[f + 3 * k - 2])
  local key = KEYS[tonumber(ARGV[f + 3 * k - 1])]
  if not out[i] then
    local kind = list_type[key]
    if not kind then
      kind = redis.call('TYPE', key)['ok']
      list_type[key] = kind
    end
    if kind ~= 'none' and kind ~= 'list' then
      refuse(i, key, kind)
    end
  end
end

local g = f + 1 + 3 * follow_ups
local callbacks = tonumber(ARGV[g])
local first_lock = g + 1
local locks = #ARGV - first_lock + 1
local release = {}
for k = 1, locks do
  local i = tonumber(ARGV[first_lock + k - 1])
  local key = KEYS[#KEYS - locks + k]
  if not out[i] then
    local holder = redis.pcall('GET', key)
    if type(holder) == 'table' and holder.err then
      refuse(i, key, redis.call('TYPE', key)['ok'])
    elseif holder == ids[i] then
      release[#release + 1] = key
    end
  end
end

-- Jobs settled per batch, for batches with an armed callback.
local per_batch = {}
if callbacks > 0 then
  local armed = {}
  for i = 1, n do
    local j = js[i]
    if j and not out[i] then
      if armed[j] == nil then
        armed[j] = callback_armed(KEYS[2 + n + callbacks + j])
      end
      if armed[j] then per_batch[j] = (per_batch[j] or 0) + 1 end
    end
  end
end

-- Phase 2: writes, the one that can fail first.
if settled > 0 then redis.call('HINCRBY', KEYS[2], 'succeeded', settled) end
local notified = {}
for i = 1, n do
  if not out[i] then
    local ttl = ttls[i] or shared_ttl
    if ttl ~= '0' then
      redis.call('SETEX', KEYS[2 + i], ttl, ARGV[res + i])
    end
    local key = lists[i]
    if key then
      redis.call('RPUSH', key, ids[i])
      notified[key] = true
    end
  end
end
for k = 1, follow_ups do
  if not out[tonumber(ARGV[f + 3 * k - 2])] then
    redis.call('LPUSH', KEYS[tonumber(ARGV[f + 3 * k - 1])], ARGV[f + 3 * k])
  end
end
for _, key in ipairs(release) do
  redis.call('DEL', key)
end
for j, count in pairs(per_batch) do
  callback_count(KEYS[2 + n + callbacks + j], 'succeeded', count)
end
save_marks(KEYS[1])
for key in pairs(notified) do
  redis.call('EXPIRE', key, 86400)
end
return {stale, unwritable}

-- Shared by the scripts that settle jobs and by batch_seal.lua: prepended
-- to each of them when loaded (see scripts.rs), so it defines local
-- functions only.
--
-- A batch submitted with a callback job has a hash (keys.rs,
-- batch_callback):
--   to         the pending list the callback goes to
--   parts      the callback's payload as a JSON array of strings: text,
--              a count's name, text, ... text; the counts go between
--   succeeded, dead, cancelled   its jobs settled so far, by outcome
--   expected   how many jobs the batch holds: set when the producer seals
--              it, after the last job went in, so a batch whose first jobs
--              finish while the rest are still being sent does not fire
--   fired      '1' once the callback is enqueued
-- Slot: the hash carries the batch's queue's hash tag {Q}; `to` is read and
-- pushed to without being a declared key, so on a cluster it must be a list
-- of the same queue: arming a callback for another queue is refused there
-- (queue/cross_slot.rs).
--
-- Whichever call brings the counts to `expected` with `expected` set (the
-- last settlement, or the seal when the jobs were quicker) pushes the
-- callback, in the same call: exactly once, and never before the end.

-- Reads (no writes) whether settlements can be counted into `hash`: false
-- when the batch has no callback, or its hash or target list has been
-- broken (then nothing is counted and nothing fails). A caller whose ACL
-- predates these hashes (ops/redis/users.acl) may not even look: that is
-- no callback either, not a settlement refused.
local function callback_armed(hash)
  local kind = redis.pcall('TYPE', hash)
  if type(kind) ~= 'table' or kind['ok'] ~= 'hash' then return false end
  local v = redis.call('HMGET', hash, 'to', 'parts')
  if not v[1] or not v[2] then return false end
  local t = redis.call('TYPE', v[1])['ok']
  if t ~= 'list' and t ~= 'none' then return false end
  local ok, parts = pcall(cjson.decode, v[2])
  return ok and type(parts) == 'table'
end

-- Pushes the callback if the batch is sealed, complete and not fired.
-- Only for a hash callback_armed() accepted in this call.
local function callback_fire(hash)
  local v = redis.call('HMGET', hash, 'expected', 'fired', 'succeeded', 'dead',
    'cancelled', 'to', 'parts')
  if not v[1] or v[2] then return end
  local counts = {
    succeeded = tonumber(v[3]) or 0,
    dead = tonumber(v[4]) or 0,
    cancelled = tonumber(v[5]) or 0,
    total = tonumber(v[1]) or 0,
  }
  if counts.succeeded + counts.dead + counts.cancelled < counts.total then return end
  local out = {}
  for i, p in ipairs(cjson.decode(v[7])) do
    if i % 2 == 1 then
      out[#out + 1] = p
    else
      out[#out + 1] = string.format('%d', counts[p] or 0)
    end
  end
  redis.call('LPUSH', v[6], table.concat(out))
  redis.call('HSET', hash, 'fired', '1')
end

-- Counts `n` settled jobs of outcome `field` into an armed batch and fires
-- its callback when they were the last. The hash lives a week past its
-- last settlement.
local function callback_count(hash, field, n)
  if n > 0 then
    redis.call('HINCRBY', hash, field, n)
    redis.call('EXPIRE', hash, 604800)
  end
  callback_fire(hash)
end

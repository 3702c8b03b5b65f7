-- Shared by the scripts that add to the dead set (bury.lua, recover.lua):
-- prepended to each when loaded (see scripts.rs), so it defines local
-- functions only.
--
-- The dead set is capped by age, by count and by bytes. The bytes are kept
-- in the queue's stats hash, so the byte cap costs no walk of the set:
--   field 'dead_bytes'   the summed length of the set's entries: raised as
--                        one goes in, lowered as one leaves (here, and in
--                        dead_retry.lua and dead_purge.lua)
--   field 'dead_trimmed' entries dropped, oldest first, to keep within the
--                        count or byte cap (`toolq stats` shows it)
-- A set written by an earlier build has no 'dead_bytes': it is summed once,
-- by a walk, the first time an entry is added.

-- The set's size in bytes, summed once when the stats hash has none.
local function dead_bytes(dead, stats)
  local b = redis.call('HGET', stats, 'dead_bytes')
  if b then return tonumber(b) end
  local total, len = 0, redis.call('ZCARD', dead)
  for start = 0, len - 1, 1000 do
    for _, m in ipairs(redis.call('ZRANGE', dead, start, start + 999)) do
      total = total + #m
    end
  end
  return total
end

-- Adds `entry` at time `now` (ms), then drops entries older than `max_age`
-- ms, beyond `max_jobs`, and oldest first while the set holds more than
-- `max_bytes` (never the entry just added: a lone entry over the cap stays,
-- so a burial always leaves its record). Returns how many were dropped for
-- the count or byte cap. Callers check the key types first (expect_type).
local function dead_add(dead, stats, entry, now, max_jobs, max_age, max_bytes)
  local bytes = dead_bytes(dead, stats)
  redis.call('ZADD', dead, now, entry)
  bytes = bytes + #entry
  local cutoff = now - max_age
  local old = redis.call('ZRANGEBYSCORE', dead, '-inf', cutoff)
  if #old > 0 then
    for _, m in ipairs(old) do bytes = bytes - #m end
    redis.call('ZREMRANGEBYSCORE', dead, '-inf', cutoff)
  end
  local trimmed = 0
  local over = redis.call('ZCARD', dead) - max_jobs
  if over > 0 then
    for _, m in ipairs(redis.call('ZRANGE', dead, 0, over - 1)) do
      bytes = bytes - #m
    end
    redis.call('ZREMRANGEBYRANK', dead, 0, over - 1)
    trimmed = over
  end
  while bytes > max_bytes do
    -- The two oldest: entries of the same millisecond sort by content, so
    -- the new one may come first.
    local two = redis.call('ZRANGE', dead, 0, 1)
    local oldest = two[1]
    if oldest == entry then oldest = two[2] end
    if oldest == nil then break end
    redis.call('ZREM', dead, oldest)
    bytes = bytes - #oldest
    trimmed = trimmed + 1
  end
  -- Only the new entry left: the sum is exactly its length (this also
  -- mends a count that drifted, e.g. by an entry removed by hand).
  if redis.call('ZCARD', dead) <= 1 then bytes = #entry end
  redis.call('HSET', stats, 'dead_bytes', bytes)
  if trimmed > 0 then
    redis.call('HINCRBY', stats, 'dead_trimmed', trimmed)
  end
  return trimmed
end

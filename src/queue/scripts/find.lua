-- Shared by the operator scripts that look a job up by id (locate.lua,
-- cancel.lua): prepended after held.lua, so it defines local functions only.
-- Every search is O(depth) of the structure searched: operator paths only,
-- never the job path.

-- Whether `payload` is the job `id`: a cheap plain search first, then a
-- decode of the few payloads that mention the id at all.
local function is_job(payload, id)
  if not string.find(payload, '"' .. id .. '"', 1, true) then
    return false
  end
  local ok, job = pcall(cjson.decode, payload)
  return ok and type(job) == 'table' and job.id == id
end

-- The pending job `id`: its payload, or nil.
local function find_pending(list, id)
  local len = redis.call('LLEN', list)
  local chunk = 1000
  for start = 0, len - 1, chunk do
    local items = redis.call('LRANGE', list, start, start + chunk - 1)
    for _, p in ipairs(items) do
      if is_job(p, id) then return p end
    end
  end
  return nil
end

-- A job of sorted set `zset` (delayed, dead): its member and score, or nil.
-- `unwrap` reads the job out of a member (dead entries wrap it).
local function find_scored(zset, id, unwrap)
  local len = redis.call('ZCARD', zset)
  local chunk = 1000
  for start = 0, len - 1, chunk do
    local items = redis.call('ZRANGE', zset, start, start + chunk - 1, 'WITHSCORES')
    for i = 1, #items, 2 do
      if unwrap(items[i], id) then return items[i], items[i + 1] end
    end
  end
  return nil
end

local function in_dead_entry(entry, id)
  if not string.find(entry, '"' .. id .. '"', 1, true) then
    return false
  end
  local ok, e = pcall(cjson.decode, entry)
  if not ok or type(e) ~= 'table' then return false end
  if type(e.job) == 'table' then return e.job.id == id end
  -- A payload kept only in part: its id, if readable, is beside it.
  return type(e.truncated) == 'table' and e.truncated.id == id
end

-- The running job `id`: {worker, slot, payload}, or nil. `tag` is the
-- queue's key prefix ('toolq:{Q}:'): active hashes are named per worker.
local function find_running(workers, tag, id)
  for _, w in ipairs(redis.call('ZRANGE', workers, 0, -1)) do
    for _, job in ipairs(held_jobs(tag .. 'active:' .. w)) do
      if is_job(job[2], id) then return {w, job[1], job[2]} end
    end
  end
  return nil
end

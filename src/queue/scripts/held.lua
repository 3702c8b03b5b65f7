-- Shared by the scripts that settle or read held jobs: prepended to each of
-- them when loaded (see scripts.rs), so it defines local functions only.
--
-- A worker's active hash holds one entry per fetched batch, so settling a job
-- costs no hash operation of its own (one HGET and one HSET or HDEL per batch
-- touched by a call, not per job):
--   field '<b>'      the batch's payloads, a MessagePack array; b is the
--                    batch number the worker chose for that fetch
--   field '<b>:done' one character per job of the batch: '0' while it is
--                    held, '1' once it is settled (acked, retried, buried,
--                    deferred or put back)
--   field 'jobs'     how many jobs the hash still holds (for stats)
-- A job is named by its slot, b * 1024 + i, i being its 0-based index in the
-- batch. A batch's fields go when its last job is settled, and the hash goes
-- with its last job. A crash re-runs only the jobs still marked '0'.

local SLOTS = 1024
local marks = {}   -- batch field -> bytes of its done string, or false
local settled = 0

-- Marks job i (1-based) of batch field b settled. False when this worker
-- does not hold it: its batch was taken over (recovered) or the job was
-- settled already. Takes strings and small integers only: number-to-string
-- conversions (sprintf, strtod) are a measurable cost per job in Redis.
local function settle(active, b, i)
  local m = marks[b]
  if m == nil then
    local d = redis.call('HGET', active, b .. ':done')
    m = d and { string.byte(d, 1, -1) } or false
    marks[b] = m
  end
  if not m or m[i] ~= 48 then
    return false
  end
  m[i] = 49
  m.changed = true
  settled = settled + 1
  return true
end

-- Takes back a settle() of this call: the job turned out not to be
-- settleable (a key it needs cannot be written), so it stays held.
local function unsettle(b, i)
  marks[b][i] = 48
  settled = settled - 1
end

-- Fails the script, before it wrote anything, when `key` holds neither
-- `kind` nor nothing: a later write to it would fail half-way through.
local function expect_type(key, kind)
  local t = redis.call('TYPE', key)['ok']
  if t ~= kind and t ~= 'none' then
    error({err = 'WRONGTYPE cannot write ' .. key .. ': it holds a ' .. t .. ', not a ' .. kind})
  end
end

-- settle() for a job named by its slot (one number, b * 1024 + i - 1).
local function settle_slot(active, slot)
  slot = tonumber(slot)
  return settle(active, string.format('%d', math.floor(slot / SLOTS)), slot % SLOTS + 1)
end

-- Writes back what settle() marked: a batch with nothing left is removed.
local function save_marks(active)
  for b, m in pairs(marks) do
    if m and m.changed then
      local open = false
      for i = 1, #m do
        if m[i] == 48 then open = true break end
      end
      if open then
        redis.call('HSET', active, b .. ':done', string.char(unpack(m)))
      else
        redis.call('HDEL', active, b, b .. ':done')
      end
    end
  end
  if settled > 0 and redis.call('HINCRBY', active, 'jobs', -settled) <= 0 then
    redis.call('HDEL', active, 'jobs')
  end
end

-- The jobs still held, oldest first: {slot, payload} pairs.
local function held_jobs(active)
  local flat = redis.call('HGETALL', active)
  local blobs, done, order = {}, {}, {}
  for i = 1, #flat, 2 do
    local f = flat[i]
    if string.match(f, '^%d+$') then
      blobs[f] = flat[i + 1]
      order[#order + 1] = f
    else
      local b = string.match(f, '^(%d+):done$')
      if b then done[b] = flat[i + 1] end
    end
  end
  table.sort(order, function(x, y) return tonumber(x) < tonumber(y) end)
  local jobs = {}
  for _, f in ipairs(order) do
    local d = done[f]
    if d then
      local payloads = cmsgpack.unpack(blobs[f])
      for i = 1, #payloads do
        if string.byte(d, i) ~= 49 then
          jobs[#jobs + 1] = {tonumber(f) * SLOTS + i - 1, payloads[i]}
        end
      end
    else
      -- A batch always has its done string (both are written and removed
      -- together), so this is one job held by a worker of the earlier
      -- layout (one field per job, holding its payload): still a job.
      jobs[#jobs + 1] = {tonumber(f), blobs[f]}
    end
  end
  return jobs
end


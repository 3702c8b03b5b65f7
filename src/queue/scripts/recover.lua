-- Recovers the jobs of a worker whose heartbeat stopped: each goes back to the
-- FRONT of pending (it is the oldest work, so it runs next), with its
-- recovery count raised; a job recovered more than the limit is buried as
-- poison instead, so a job that kills workers cannot kill the fleet forever.
-- Staleness is checked again here, atomically, so exactly one live worker
-- recovers a given job and a worker that came back in time keeps its jobs.
--
-- Slot: every key carries the queue's hash tag {Q}, those it builds from
-- ARGV[7] too: one slot, one node of a cluster.
-- KEYS[1] workers sorted set
-- KEYS[2] active hash of the dead worker (layout in held.lua); only its jobs
--         not yet settled are put back
-- KEYS[3] landing list of the dead worker
-- KEYS[4] pending list
-- KEYS[5] dead sorted set
-- KEYS[6] stats hash of the queue
-- ARGV[1] dead worker id
-- ARGV[2] heartbeat timeout in ms
-- ARGV[3] most recoveries before a job is buried
-- ARGV[4] most entries kept in the dead set
-- ARGV[5] oldest entry kept, in milliseconds of age
-- ARGV[6] most bytes of entries kept in the dead set (dead_set.lua)
-- ARGV[7] the queue's key prefix, 'toolq:{Q}:': a poisoned job of a batch
--         with a callback is counted dead into 'toolq:{Q}:batch_callback:<b>'
--         (keys.rs; the batch is known only once the payload is read)
-- Returns {recovered, {payloads buried}} (the caller writes their results:
-- their keys are not known before the payloads are read), or {-1, {}} when
-- the worker is alive after all.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local beat = redis.call('ZSCORE', KEYS[1], ARGV[1])
if beat and tonumber(beat) >= now - tonumber(ARGV[2]) then
  return {-1, {}}
end

-- The recovery count is the first field of the object, written textually so
-- the rest of the payload is not re-encoded (cjson would mangle big numbers).
local function bump(p)
  local n, rest = string.match(p, '^{"recoveries":(%d+),(.*)$')
  if n then
    local c = tonumber(n) + 1
    return c, '{"recoveries":' .. c .. ',' .. rest
  end
  local body = string.match(p, '^%s*{(.*)$')
  if not body then
    return 0, p -- not an object: the worker buries it without running it
  end
  if string.match(body, '^%s*}') then
    return 1, '{"recoveries":1' .. body
  end
  return 1, '{"recoveries":1,' .. body
end

local jobs = held_jobs(KEYS[2])
local landed = redis.call('LRANGE', KEYS[3], 0, -1)

local limit = tonumber(ARGV[3])
-- Decided first, written after the key types are checked: a script that
-- failed half-way would keep its earlier writes.
local back, dead = {}, {}
local function sort_out(p, slot)
  local count, bumped = bump(p)
  if count > limit then
    dead[#dead + 1] = {bumped, count, slot}
  else
    back[#back + 1] = bumped
  end
end
for i = 1, #landed do
  sort_out(landed[i], -i)
end
for i = #jobs, 1, -1 do
  sort_out(jobs[i][2], jobs[i][1])
end
expect_type(KEYS[4], 'list')
if #dead > 0 then
  expect_type(KEYS[5], 'zset')
  expect_type(KEYS[6], 'hash')
end
-- The batches (with a callback) the poisoned jobs belong to.
local counted = {}
for k, d in ipairs(dead) do
  local ok, job = pcall(cjson.decode, d[1])
  if ok and type(job) == 'table' and type(job.batch) == 'string' then
    local hash = ARGV[7] .. 'batch_callback:' .. job.batch
    if callback_armed(hash) then counted[k] = hash end
  end
end

-- RPUSH puts each where the next fetch looks first; the newest goes first so
-- the oldest ends up rightmost and runs first.
for _, p in ipairs(back) do
  redis.call('RPUSH', KEYS[4], p)
end
local buried = {}
for _, d in ipairs(dead) do
  local job = d[1]
  if not pcall(cjson.decode, job) then job = cjson.encode(job) end
  local entry = '{"job":' .. job .. ',"error":{"kind":"poisoned","message":' ..
    cjson.encode('worker died while running this job ' .. d[2] .. ' times') ..
    '},"worker":' .. cjson.encode(ARGV[1]) .. ',"slot":' .. d[3] ..
    ',"died_at":' .. now .. '}'
  dead_add(KEYS[5], KEYS[6], entry, now, tonumber(ARGV[4]), tonumber(ARGV[5]),
    tonumber(ARGV[6]))
  buried[#buried + 1] = d[1]
end
for _, hash in pairs(counted) do
  callback_count(hash, 'dead', 1)
end
if #buried > 0 then
  redis.call('HINCRBY', KEYS[6], 'dead', #buried)
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[1], ARGV[1])
local recovered = #back
return {recovered, buried}

-- Cancels a job by id: a pending or scheduled job is removed in this step
-- and never runs; a running job is flagged for its worker, which stops the
-- call and settles the job as cancelled (its heartbeat reads the flags
-- within a second). O(depth): operator path only.
--
-- Slot: every key carries the queue's hash tag {Q} (one slot), those it
-- builds from ARGV[2] too; a batch callback's list is the batch's own queue
-- on a cluster (arming one elsewhere is refused, queue/cross_slot.rs).
-- KEYS[1] pending list
-- KEYS[2] delayed sorted set
-- KEYS[3] workers sorted set
-- KEYS[4] the job's result key
-- KEYS[5] stats hash of the queue
-- KEYS[6] cancel requests sorted set: '["worker","slot","id"]' -> time
--         requested (Redis ms); the worker stops the job in that slot
-- ARGV[1] job id
-- ARGV[2] the queue's key prefix, 'toolq:{Q}:'
-- ARGV[3] result TTL in seconds for the cancelled job's result document
-- ARGV[4] result document JSON without its closing: the script appends
--         ',"tool":...,"attempts":...,"finished_at":<now>}' from the job
-- Returns {'removed', state} (state: 'pending' or 'scheduled'),
-- {'requested'} for a running job, {'finished', status} for a job with a
-- final result, or {'unknown'}.

local id = ARGV[1]
local tag = ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- What a removed job leaves: its result, its notification, its lock.
local function settle_cancelled(payload)
  local ok, job = pcall(cjson.decode, payload)
  if not ok or type(job) ~= 'table' then job = {} end
  local doc = ARGV[4] .. ',"tool":' .. cjson.encode(tostring(job.tool or '')) ..
    ',"attempts":' .. string.format('%d', tonumber(job.attempt) or 0) ..
    ',"recoveries":' .. string.format('%d', tonumber(job.recoveries) or 0) ..
    ',"started_at":0,"finished_at":' .. string.format('%d', now) ..
    ',"duration_ms":0,"worker":"","cached":false}'
  local ttl = tonumber(ARGV[3])
  if type(job.result_ttl_s) == 'number' then ttl = job.result_ttl_s end
  if ttl > 0 then
    redis.call('SET', KEYS[4], doc, 'EX', ttl)
  end
  redis.call('HINCRBY', KEYS[5], 'cancelled', 1)
  if type(job.unique_key) == 'string' then
    local lock = tag .. 'unique:' .. job.unique_key
    if redis.call('GET', lock) == id then redis.call('DEL', lock) end
  end
  if type(job.batch) == 'string' then
    local list = tag .. 'batch:' .. job.batch
    if redis.call('TYPE', list)['ok'] ~= 'string' then
      redis.call('RPUSH', list, id)
      redis.call('EXPIRE', list, 86400)
    end
    -- keys.rs batch_callback: the batch counts it, and may be complete.
    local hash = tag .. 'batch_callback:' .. job.batch
    if callback_armed(hash) then
      callback_count(hash, 'cancelled', 1)
    end
  end
end

local p = find_pending(KEYS[1], id)
if p then
  redis.call('LREM', KEYS[1], 1, p)
  settle_cancelled(p)
  return {'removed', 'pending'}
end
local member = find_scored(KEYS[2], id, is_job)
if member then
  redis.call('ZREM', KEYS[2], member)
  settle_cancelled(member)
  return {'removed', 'scheduled'}
end
local running = find_running(KEYS[3], tag, id)
if running then
  local request = cjson.encode({running[1], string.format('%d', running[2]), id})
  redis.call('ZADD', KEYS[6], now, request)
  -- Requests older than a minute were seen (or their job is gone).
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - 60000)
  redis.call('PEXPIRE', KEYS[6], 120000)
  return {'requested'}
end
local result = redis.call('GET', KEYS[4])
if result then
  local ok, doc = pcall(cjson.decode, result)
  if ok and type(doc) == 'table' and doc.status ~= 'retrying' then
    return {'finished', tostring(doc.status)}
  end
end
return {'unknown'}

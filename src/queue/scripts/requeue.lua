-- Puts jobs this worker holds back at the front of pending without counting
-- a recovery or an attempt (the job did nothing wrong): jobs it will not
-- finish (cancelled, or interrupted by a stop) and jobs of a fetch whose
-- reply never came. On a graceful stop it also deregisters the worker in
-- the same step, so no moment exists where the worker is gone from the
-- workers set while its active hash still holds jobs nobody would recover.
--
-- Slot: every key carries the queue's hash tag {Q}: one slot, one node of a
-- cluster.
-- KEYS[1] active hash of this worker
-- KEYS[2] pending list
-- KEYS[3] workers sorted set of the queue
-- ARGV[1] 'stop': every held job, then deregister ARGV[2] (the worker id);
--         'slots': the held jobs named by ARGV[2..] (held.lua slots);
--         'batches': every held job of the fetched batches ARGV[2..]
-- Jobs this worker does not hold (any more) are skipped.
-- Returns how many jobs were put back.

local mode = ARGV[1]
local jobs = {}
if mode == 'stop' then
  jobs = held_jobs(KEYS[1])
else
  local blobs = {}
  local function take(b, i)
    if settle(KEYS[1], b, i) then
      if not blobs[b] then
        blobs[b] = cmsgpack.unpack(redis.call('HGET', KEYS[1], b))
      end
      jobs[#jobs + 1] = {tonumber(b) * SLOTS + i - 1, blobs[b][i]}
    end
  end
  for k = 2, #ARGV do
    if mode == 'slots' then
      local slot = tonumber(ARGV[k])
      take(string.format('%d', math.floor(slot / SLOTS)), slot % SLOTS + 1)
    else
      local done = redis.call('HGET', KEYS[1], ARGV[k] .. ':done') or ''
      for i = 1, #done do
        take(ARGV[k], i)
      end
    end
  end
  table.sort(jobs, function(a, b) return a[1] < b[1] end)
end

-- The one write that can fail (pending is not a list) comes first.
for i = #jobs, 1, -1 do
  redis.call('RPUSH', KEYS[2], jobs[i][2])
end
if mode == 'stop' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], ARGV[2])
else
  save_marks(KEYS[1])
end
return #jobs

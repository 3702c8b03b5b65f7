-- Puts this worker's unfinished jobs back at the front of pending on a
-- graceful stop, without counting a recovery or an attempt: the job did
-- nothing wrong.
--
-- KEYS[1] active hash of this worker
-- KEYS[2] landing list of this worker
-- KEYS[3] pending list
-- ARGV    slots (held.lua) to put back; none means all of them. Slots this
--         worker does not hold are skipped.
-- Returns how many jobs were put back.

local jobs = {}
if #ARGV == 0 then
  jobs = held_jobs(KEYS[1])
  redis.call('DEL', KEYS[1])
else
  local batches = {}
  for i = 1, #ARGV do
    if settle_slot(KEYS[1], ARGV[i]) then
      local slot = tonumber(ARGV[i])
      local b = math.floor(slot / SLOTS)
      if not batches[b] then
        batches[b] = cmsgpack.unpack(redis.call('HGET', KEYS[1], string.format('%d', b)))
      end
      jobs[#jobs + 1] = {slot, batches[b][slot % SLOTS + 1]}
    end
  end
  save_marks(KEYS[1])
  table.sort(jobs, function(a, b) return a[1] < b[1] end)
end

local landed = redis.call('LRANGE', KEYS[2], 0, -1)
local n = 0
for i = 1, #landed do
  redis.call('RPUSH', KEYS[3], landed[i])
  n = n + 1
end
redis.call('DEL', KEYS[2])
for i = #jobs, 1, -1 do
  redis.call('RPUSH', KEYS[3], jobs[i][2])
  n = n + 1
end
return n

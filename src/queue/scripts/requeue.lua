-- Puts this worker's unfinished jobs back at the front of pending on a
-- graceful stop, without counting a recovery or an attempt: the job did
-- nothing wrong.
--
-- KEYS[1] active hash of this worker
-- KEYS[2] landing list of this worker
-- KEYS[3] pending list
-- ARGV    fetch sequence numbers to put back; none means all of them
-- Returns how many jobs were put back.

local jobs = {}
if #ARGV == 0 then
  local flat = redis.call('HGETALL', KEYS[1])
  for i = 1, #flat, 2 do
    jobs[#jobs + 1] = {tonumber(flat[i]), flat[i + 1]}
  end
  redis.call('DEL', KEYS[1])
else
  for i = 1, #ARGV do
    local p = redis.call('HGET', KEYS[1], ARGV[i])
    if p then
      jobs[#jobs + 1] = {tonumber(ARGV[i]), p}
      redis.call('HDEL', KEYS[1], ARGV[i])
    end
  end
end
table.sort(jobs, function(a, b) return a[1] < b[1] end)

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

-- Lists the payloads a worker holds, oldest first (for inspection: the
-- active hash stores batches, see held.lua).
--
-- Slot: every key carries the queue's hash tag {Q}: one slot, one node of a
-- cluster.
-- KEYS[1] active hash of the worker
-- KEYS[2] landing list of the worker
-- Returns the payloads of its unsettled jobs, then those in its landing list.

local out = {}
for _, job in ipairs(held_jobs(KEYS[1])) do
  out[#out + 1] = job[2]
end
local landed = redis.call('LRANGE', KEYS[2], 0, -1)
for i = #landed, 1, -1 do
  out[#out + 1] = landed[i]
end
return out

-- Parks a fetched job whose run_at lies in the future (by Redis's clock) in
-- the delayed set instead of running it early; also parks a job over its
-- tool's rate limit until a slot frees.
--
-- Ownership is checked before the due time: a retried call whose first try
-- already parked the job (its reply lost) must answer "stale", never "due
-- now", or the job would run here and again from the delayed set.
--
-- Slot: every key carries the queue's hash tag {Q}: one slot, one node of a
-- cluster.
-- KEYS[1] active hash of this worker
-- KEYS[2] delayed sorted set
-- ARGV[1] the job's slot in the active hash (held.lua)
-- ARGV[2] due time, unix ms
-- ARGV[3] payload, carrying the job's id: sorted-set members are unique, so
--         two identical payloads without one would become one job
-- Publishes a wake-up (wake.lua) when the job is the delayed set's new
-- earliest.
-- Returns 1 when deferred, 0 when it is due (run it now), -1 when stale.

if not settle_slot(KEYS[1], ARGV[1]) then
  return -1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[2]) <= now then
  -- Due: the settle above was only in memory; nothing is written.
  return 0
end
-- The one write that can fail comes before the settle is saved.
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
wake_delayed(KEYS[2], ARGV[2])
save_marks(KEYS[1])
return 1

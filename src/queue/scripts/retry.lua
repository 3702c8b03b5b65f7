-- Schedules another attempt of a failed job: moves it from this worker's
-- active hash to the delayed set, due after the backoff, judged by Redis's
-- clock so workers with skewed clocks agree on when it is due. Key types
-- are checked before the first write, so the script moves the job whole or
-- leaves it held.
--
-- Slot: every key carries the queue's hash tag {Q}: one slot, one node of a
-- cluster.
-- KEYS[1] active hash of this worker
-- KEYS[2] delayed sorted set
-- KEYS[3] result key of the job
-- KEYS[4] stats hash of the queue
-- ARGV[1] the job's slot in the active hash (held.lua)
-- ARGV[2] delay in milliseconds
-- ARGV[3] the job's payload for its next attempt (it carries its id, so two
--         jobs never share a member of the delayed set)
-- ARGV[4] result TTL in seconds; 0 stores no result
-- ARGV[5] result JSON (status "retrying", for anyone watching)
-- Publishes a wake-up (wake.lua) when the retry is the delayed set's new
-- earliest job: should this worker die, another promotes it on time.
-- Returns 1, or 0 when the job was no longer ours (stale, nothing written).

if not settle_slot(KEYS[1], ARGV[1]) then
  return 0
end
expect_type(KEYS[2], 'zset')
expect_type(KEYS[4], 'hash')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
wake_delayed(KEYS[2], now + tonumber(ARGV[2]))
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('SET', KEYS[3], ARGV[5], 'EX', ttl)
end
redis.call('HINCRBY', KEYS[4], 'retrying', 1)
save_marks(KEYS[1])
return 1

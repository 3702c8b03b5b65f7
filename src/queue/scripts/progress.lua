-- Stores a running job's latest progress report, only while this worker
-- still holds the job (fencing): once it is settled, or taken over by
-- another worker after this one was declared dead, nothing is written, so
-- a late report never lands beside a newer attempt's.
--
-- Reads the active hash's layout from held.lua's comment (not its helpers:
-- this script only reads the mark); the one write comes last.
--
-- Slot: every key carries the queue's hash tag {Q}: one slot, one node of a
-- cluster.
-- KEYS[1] active hash of this worker
-- KEYS[2] the job's progress key
-- ARGV[1] the job's batch number, as the active hash names it
-- ARGV[2] the job's 1-based index in that batch
-- ARGV[3] fraction done, 0 to 1
-- ARGV[4] message
-- ARGV[5] attempt (0 on the first)
-- ARGV[6] TTL of the progress key, ms
-- Returns 1 when written, 0 when the job is no longer held here.

local done = redis.call('HGET', KEYS[1], ARGV[1] .. ':done')
if not done or string.byte(done, tonumber(ARGV[2])) ~= 48 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local doc = cjson.encode({
  fraction = tonumber(ARGV[3]),
  message = ARGV[4],
  attempt = tonumber(ARGV[5]),
  updated_at = now,
})
redis.call('SET', KEYS[2], doc, 'PX', ARGV[6])
return 1

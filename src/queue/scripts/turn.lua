-- Takes this worker's turn at a fleet-wide chore of a queue (publishing the
-- queue gauges, listing connections), unless another worker holds it, and
-- reads the queue's shared readings in the same round trip. One worker at a
-- time does the chore, so its cost is paid once per turn for the whole fleet
-- instead of once per worker.
--
-- Slot: one key.
-- KEYS[1] fleet hash of the queue
-- ARGV[1] chore (field of the hash: `<until ms>:<worker id>`)
-- ARGV[2] worker id
-- ARGV[3] length of a turn in ms
-- ARGV[4] ms the hash is kept after a turn is taken (it goes with the fleet)
-- Returns {1 when the turn is this worker's, else 0, the hash as a flat
-- field/value list (read before the turn was written)}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local flat = redis.call('HGETALL', KEYS[1])
local holder
for i = 1, #flat, 2 do
  if flat[i] == ARGV[1] then holder = flat[i + 1] end
end
if holder then
  local untl, who = string.match(holder, '^(%d+):(.*)$')
  if untl and tonumber(untl) > now and who ~= ARGV[2] then
    return {0, flat}
  end
end
redis.call('HSET', KEYS[1], ARGV[1], (now + tonumber(ARGV[3])) .. ':' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return {1, flat}

-- Reliable batch fetch: moves up to N of the oldest pending jobs into this
-- worker's active hash in one step, so a crash at any point leaves each job
-- either pending or active, never nowhere.
--
-- KEYS[1] pending list (producers LPUSH, oldest at the right)
-- KEYS[2] active hash of this worker (field = fetch sequence number)
-- KEYS[3] landing list of this worker (jobs moved by a blocking BLMOVE)
-- KEYS[4] workers sorted set of the queue
-- ARGV[1] N, the most jobs to take
-- ARGV[2] sequence number of the first job returned; the i-th job returned
--         (1-based) is stored under field ARGV[2] + i - 1
-- ARGV[3] worker id
-- Returns the payloads, oldest first (landed jobs before pending ones), or
-- the error NOTREGISTERED when this worker is not in the workers set: its
-- jobs could not be recovered if it died, so it must not take any.

if not redis.call('ZSCORE', KEYS[4], ARGV[3]) then
  return redis.error_reply('NOTREGISTERED worker must register before fetching')
end

local seq = tonumber(ARGV[2])
local out = {}
local fields = {}

local function take(payload)
  out[#out + 1] = payload
  fields[#fields + 1] = tostring(seq)
  fields[#fields + 1] = payload
  seq = seq + 1
end

local want = tonumber(ARGV[1])
local landed = redis.call('LRANGE', KEYS[3], -want, -1)
if #landed > 0 then
  redis.call('LTRIM', KEYS[3], 0, -(#landed + 1))
  for i = #landed, 1, -1 do
    take(landed[i])
  end
end

want = want - #landed
if want > 0 then
  local items = redis.call('LRANGE', KEYS[1], -want, -1)
  if #items > 0 then
    redis.call('LTRIM', KEYS[1], 0, -(#items + 1))
    for i = #items, 1, -1 do
      take(items[i])
    end
  end
end

-- HSET in chunks: unpack() of a huge table would overflow Lua's stack.
local chunk = 400
for i = 1, #fields, chunk do
  redis.call('HSET', KEYS[2], unpack(fields, i, math.min(i + chunk - 1, #fields)))
end

return out

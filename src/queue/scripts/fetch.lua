-- Reliable batch fetch: moves up to N of the oldest pending jobs into this
-- worker's active hash in one step, so a crash at any point leaves each job
-- either pending or active, never nowhere. The batch is one entry of the hash
-- (layout in held.lua): storing it costs the same for 1 job or 1000.
--
-- Slot: every key carries the queue's hash tag {Q}: one slot, one node of a
-- cluster.
-- KEYS[1] pending list (producers LPUSH, oldest at the right)
-- KEYS[2] active hash of this worker
-- KEYS[3] workers sorted set of the queue
-- ARGV[1] N, the most jobs to take (at most 1024, the slots of a batch)
-- ARGV[2] batch number, never used before by this worker: the i-th job
--         returned (0-based) is held in slot ARGV[2] * 1024 + i
-- ARGV[3] worker id
-- ARGV[4] recoveries at which a job is a suspect: its next worker death buries
--         it as poison, so it must first get a run alone. A suspect is
--         returned on its own (the batch stops before it otherwise).
-- ARGV[5] most bytes a payload may have: a longer one is replaced, in the
--         active hash and in the reply alike, by a stand-in (below), so the
--         worker never downloads it and the batch entry never copies it
-- ARGV[6] bytes of an oversized payload's head that its stand-in keeps
-- ARGV[7] bytes of its tail the stand-in keeps too (a producer that writes
--         its fields in key order puts `id` and `batch` after `args`)
-- ARGV[8] age in ms past which a fetch that takes jobs also refreshes this
--         worker's score in the workers set (its heartbeat on the queue): an
--         idle worker beats an idle queue only every few seconds, and the
--         jobs it takes must be fenced by a fresh heartbeat from the start;
--         0: never (a fetch sent with a wait, below, may run for a worker
--         that froze since: it must not keep that worker alive)
-- ARGV[9] age in ms past which this worker's score takes nothing; 0: no
--         limit. A fetch pipelined behind a blocking wait runs whenever a
--         job lands, maybe after its worker froze or was cut off: it must
--         not take a job for, and refresh the heartbeat of, a worker that
--         is not beating any more (a live one's score is younger)
-- Returns the payloads, oldest first, or
-- the error NOTREGISTERED when this worker is not in the workers set: its
-- jobs could not be recovered if it died, so it must not take any.

local beat = redis.call('ZSCORE', KEYS[3], ARGV[3])
if not beat then
  return redis.error_reply('NOTREGISTERED worker must register before fetching')
end

local now
local function clock()
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now
end

local max_age = tonumber(ARGV[9]) or 0
if max_age > 0 and clock() - tonumber(beat) > max_age then
  return {}
end

local out = {}

-- An oversized payload's stand-in: a NUL byte (no JSON text starts with
-- one, so it never parses as a job), a marker, the payload's size, SHA-1
-- and head length, its head and its tail:
--   \0toolq:oversized:<bytes>:<sha1>:<head length>:<head><tail>
-- The worker buries it as too large, with the id and batch read from the
-- head or tail if it can, and the dead entry keeps only the head. The
-- payload itself is gone once trimmed from pending: nothing more of it
-- would be kept anyway, and a recovered stand-in is buried the same way.
local max_bytes = tonumber(ARGV[5])
local head = tonumber(ARGV[6])
local tail = tonumber(ARGV[7])
local mark = '\0toolq:oversized:'
local function fit(p)
  if #p <= max_bytes then return p end
  -- A recovered stand-in can be over a small limit itself: kept as it is.
  if #p <= head + tail + 128 and string.sub(p, 1, #mark) == mark then return p end
  local h = string.sub(p, 1, head)
  return mark .. #p .. ':' .. redis.sha1hex(p) .. ':' .. #h .. ':' ..
    h .. string.sub(p, -tail)
end

local solo_at = tonumber(ARGV[4])
local function suspect(p)
  local n = string.match(p, '^{"recoveries":(%d+)')
  return n ~= nil and tonumber(n) >= solo_at
end

-- Reads up to `want` of the oldest jobs of `list`, stopping at a suspect;
-- returns how many to trim once they are held.
local solo = false
local function take_from(list, want)
  if want <= 0 or solo then return 0 end
  local items = redis.call('LRANGE', list, -want, -1)
  local n = 0
  for i = #items, 1, -1 do
    if suspect(items[i]) then
      solo = true
      if #out == 0 then
        out[1] = fit(items[i])
        n = n + 1
      end
      break
    end
    out[#out + 1] = fit(items[i])
    n = n + 1
  end
  return n
end

local want = math.min(tonumber(ARGV[1]), 1024)
local n = take_from(KEYS[1], want)

-- Held first, trimmed after: if the active hash cannot be written, the
-- script fails before it took anything from pending.
if n > 0 then
  redis.call('HSET', KEYS[2], ARGV[2], cmsgpack.pack(out),
    ARGV[2] .. ':done', string.rep('0', #out))
  redis.call('HINCRBY', KEYS[2], 'jobs', #out)
  redis.call('LTRIM', KEYS[1], 0, -(n + 1))
  local fresh = tonumber(ARGV[8])
  if fresh > 0 and clock() - tonumber(beat) >= fresh then
    redis.call('ZADD', KEYS[3], 'XX', clock(), ARGV[3])
  end
end
return out

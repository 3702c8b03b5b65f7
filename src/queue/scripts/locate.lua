-- Finds a job by id and tells its state, for `toolq job show` and the
-- gateway: read-only, O(depth) (operator path only).
--
-- Slot: every key carries the queue's hash tag {Q}: one slot, one node of a
-- cluster.
-- KEYS[1] pending list
-- KEYS[2] delayed sorted set
-- KEYS[3] workers sorted set
-- KEYS[4] dead sorted set
-- KEYS[5] the job's result key
-- ARGV[1] job id
-- ARGV[2] the queue's key prefix, 'toolq:{Q}:'
-- Returns {state, payload or entry, detail}: 'pending' (payload, ''),
-- 'scheduled' (payload, due ms), 'running' (payload, worker), 'dead'
-- (dead entry, died ms), 'result' (result document, '') when only the
-- result is left, or {'unknown'}.

local id = ARGV[1]
local p = find_pending(KEYS[1], id)
if p then return {'pending', p, ''} end
local member, due = find_scored(KEYS[2], id, is_job)
if member then return {'scheduled', member, due} end
local running = find_running(KEYS[3], ARGV[2], id)
if running then return {'running', running[3], running[1]} end
local entry, died = find_scored(KEYS[4], id, in_dead_entry)
if entry then return {'dead', entry, died} end
local result = redis.call('GET', KEYS[5])
if result then return {'result', result, ''} end
return {'unknown'}

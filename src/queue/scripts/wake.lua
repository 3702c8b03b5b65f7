-- Wake-up signals, prepended to the scripts that give idle workers
-- something to do at a time they cannot know: a delayed set's new earliest
-- job, a schedule's new next tick. Idle workers do not poll every lane each
-- second; they listen on one channel, 'toolq:wake' (keys.rs WAKE_CHANNEL),
-- and look at the lane the message names. PUBLISH is not a key access (it
-- touches no slot) and on a cluster reaches every node's subscribers. It is
-- sent with redis.pcall: a Redis user without rights to the channel still
-- writes its jobs, and the workers see them at their slow poll instead.

-- Publishes '<kind> <key>'.
local function wake(kind, key)
  redis.pcall('PUBLISH', 'toolq:wake', kind .. ' ' .. key)
end

-- After a ZADD of score `due` to delayed set `key`: publishes when no job
-- there is due earlier (one that is was already being waited for). ZCOUNT
-- reads no payload: a producer may run it. It runs after the script's
-- writes, so it must not fail the script: a user without ZCOUNT (an ACL
-- written before it) publishes every time instead.
local function wake_delayed(key, due)
  local earlier = redis.pcall('ZCOUNT', key, '-inf', '(' .. due)
  if type(earlier) ~= 'number' or earlier == 0 then
    wake('delayed', key)
  end
end


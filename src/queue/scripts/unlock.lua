-- Releases a lock, but only if it still holds the caller's value: after its
-- TTL the lock may already belong to someone else. Used for cache fill
-- locks (value: the caller's token) and for the unique lock of a job buried
-- by recovery (value: the job id).
--
-- Slot: one key.
-- KEYS[1] the lock key
-- ARGV[1] the value the lock was taken with
-- Returns 1 when released, 0 when it was not ours (or already gone).

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0

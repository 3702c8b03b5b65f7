-- Releases a cache-fill lock, but only if this caller still holds it: after
-- its TTL the lock may already belong to another worker.
--
-- KEYS[1] the cache entry's lock key
-- ARGV[1] the token the lock was taken with
-- Returns 1 when released, 0 when it was not ours (or already gone).

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0

-- Seals a batch submitted with a callback: records how many jobs it holds,
-- once the producer has sent them all, and fires the callback at once if
-- they are all settled already (batch_callback.lua).
--
-- Slot: the hash carries the queue's hash tag {Q}; the callback's list it
-- names is the batch's own queue on a cluster (arming one elsewhere is
-- refused, queue/cross_slot.rs), so one slot.
-- KEYS[1] the batch's callback hash
-- ARGV[1] how many jobs went on the queue
-- Returns 1 when the callback was pushed by this call, else 0.

if not callback_armed(KEYS[1]) then
  return redis.error_reply('ERR cannot seal ' .. KEYS[1] .. ': not a batch with a callback')
end
redis.call('HSET', KEYS[1], 'expected', ARGV[1])
redis.call('EXPIRE', KEYS[1], 604800)
callback_fire(KEYS[1])
if redis.call('HGET', KEYS[1], 'fired') then
  return 1
end
return 0

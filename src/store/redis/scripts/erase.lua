#!lua flags=allow-oom
-- Erases a user: every per-user key, and the user's log-sealing key from the keyring, so the
-- user's journey- and decision-log entries can no longer be opened (crypto-shredding).
-- Allowed when Redis is out of memory: an erasure only frees memory.
-- KEYS (EraseArgs): the per-user keys (Keys::all_of_user, the sealing key last), then the
--       keyring.
-- ARGV: none.
-- Returns how many per-user keys existed.
local sealing, ring = KEYS[#KEYS - 1], KEYS[#KEYS]
local k = redis.call('GET', sealing)
if k then redis.call('HDEL', ring, string.match(k, '^([^:]*)')) end
local n = 0
for i = 1, #KEYS - 1 do n = n + redis.call('DEL', KEYS[i]) end
return n

#!lua flags=allow-oom
-- Erases a user: every per-user key, and the user's log-sealing key from the keyring, so the
-- user's journey- and decision-log entries can no longer be opened (crypto-shredding).
-- Allowed when Redis is out of memory: an erasure only frees memory.
-- KEYS (EraseArgs): the per-user keys (Keys::all_of_user, the profile first and the sealing
--       key last), then the keyring, then the in-stage-now counter hash of the user's slot.
-- ARGV: none.
-- Returns how many per-user keys existed.
local sealing, ring, now = KEYS[#KEYS - 2], KEYS[#KEYS - 1], KEYS[#KEYS]
-- The user leaves the in-stage counter (domain::funnel: `s|` for a user seen but never moved).
local stage = redis.call('HGET', KEYS[1], 'stage')
if not stage and redis.call('HEXISTS', KEYS[1], 'fs') == 1 then stage = '' end
if stage then redis.call('HINCRBY', now, 's|' .. stage, -1) end
local k = redis.call('GET', sealing)
if k then redis.call('HDEL', ring, string.match(k, '^([^:]*)')) end
local n = 0
for i = 1, #KEYS - 2 do n = n + redis.call('DEL', KEYS[i]) end
return n

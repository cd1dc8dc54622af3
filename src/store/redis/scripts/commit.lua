#!lua
-- Applies a user's new state if the version is unchanged (optimistic write), with the
-- stage history, dedup marks, journey log and experiment attribution, atomically.
-- Needs attribute.lua, user_key.lua, count.lua and log.lua prepended.
-- KEYS (CommitArgs): 1 profile, 2 history, 3 dedup, 4 journey log, 5 exposures, 6 experiment counters,
--       7 sealing key, 8 keyring, 9.. the counter keys (count.lua).
-- ARGV: 1 expected version, 2 now, 3 dedup cutoff, 4 dedup max, 5 journey log maxlen, 6 new version,
--       7 sealing key (user_key's arg; '' when there is no event), 8 nfields, field/value pairs
--       to set..., ndeleted (-1: replace the whole profile), fields to delete...,
--       ntransitions, transitions (JSON)..., nevents,
--       per event: id, nfields, field/value pairs..., then the counter arguments, then the
--       attribution arguments.
-- Returns 1 when applied, 0 on a version conflict, -2 when the events were sealed with a key
-- that is not the user's (nothing written on 0 or -2).
local v = redis.call('HGET', KEYS[1], 'v') or '0'
if v ~= ARGV[1] then return 0 end
if ARGV[7] ~= '' and log_full(KEYS[4], ARGV[5]) then return redis.error_reply(LOG_FULL) end
if ARGV[7] ~= '' and not user_key(KEYS[7], KEYS[8], ARGV[7]) then return -2 end
local now = ARGV[2]
local i = 8
local nf = tonumber(ARGV[i]); i = i + 1
-- One HSET for the fields that changed (the version matched, so the caller knows the rest),
-- or for the whole profile (at most ~330 fields: well inside unpack's limit).
local fields = {'v', ARGV[6]}
for k = 1, 2 * nf do fields[k + 2] = ARGV[i + k - 1] end
i = i + 2 * nf
local nd = tonumber(ARGV[i]); i = i + 1
if nd < 0 then
  redis.call('DEL', KEYS[1])
elseif nd > 0 then
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, i + nd - 1)); i = i + nd
end
redis.call('HSET', KEYS[1], unpack(fields))
local nt = tonumber(ARGV[i]); i = i + 1
for k = 1, nt do
  redis.call('RPUSH', KEYS[2], ARGV[i]); i = i + 1
end
local ne = tonumber(ARGV[i]); i = i + 1
for k = 1, ne do
  redis.call('ZADD', KEYS[3], now, ARGV[i]); i = i + 1
  local n = tonumber(ARGV[i]); i = i + 1
  local fields = {}
  for f = 1, n * 2 do fields[f] = ARGV[i]; i = i + 1 end
  log_add(KEYS[4], ARGV[5], unpack(fields))
end
i = count(9, i)
attribute(KEYS[5], KEYS[6], i)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[3])
local excess = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[4])
if excess > 0 then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, excess - 1) end
-- Event ids are only needed for the dedup window: the set expires when no event came for that long.
redis.call('PEXPIRE', KEYS[3], tonumber(now) - tonumber(ARGV[3]))
return 1

#!lua flags=no-writes
-- Reads a user in one round trip.
-- KEYS (LoadArgs): 1 profile, 2 history, 3 dedup, 4 contacts, 5 marks, 6 sealing key.
-- ARGV: 1 contacts since ('' = not needed), 2.. event ids to check.
-- Returns {profile fields, transitions, seen flags (1/0 per event id), contacts with scores, marks,
-- sealing key (`kid:key-hex`, or '' when the user has none)}.
local p = redis.call('HGETALL', KEYS[1])
local j = redis.call('LRANGE', KEYS[2], 0, -1)
local seen = {}
if #ARGV > 1 then
  local ids = {}
  for i = 2, #ARGV do ids[i - 1] = ARGV[i] end
  local s = redis.call('ZMSCORE', KEYS[3], unpack(ids))
  for i = 1, #ids do seen[i] = s[i] and 1 or 0 end
end
local contacts, marks = {}, {}
if ARGV[1] ~= '' then
  contacts = redis.call('ZRANGEBYSCORE', KEYS[4], ARGV[1], '+inf', 'WITHSCORES')
  marks = redis.call('HGETALL', KEYS[5])
end
return {p, j, seen, contacts, marks, redis.call('GET', KEYS[6]) or ''}

#!lua
-- Logs an outcome of a recent decision once per (offer, outcome kind): marks dismissals and
-- acceptances for cooldowns, attributes clicks and conversions, appends to the decision log.
-- Needs attribute.lua, user_key.lua and log.lua prepended.
-- KEYS (OutcomeArgs): 1 recent decisions, 2 decision log, 3 marks, 4 exposures,
--       5 experiment counters, 6 sealing key, 7 keyring, 8 the recent-decisions hash of before
--       issue 9 (read only, so decisions made before an upgrade link until it expires),
--       9 the day counter hash of the outcome's day.
-- ARGV: 1 decision id, 2 offer id, 3 record JSON sealed, 4 decision log maxlen, 5 outcome kind,
--       6 at, 7 ttl ms, 8 sealing key (user_key's arg), 9 expire-at of the day counter hash (ms),
--       10 value, 11.. the attribution arguments.
-- Returns 1 linked, 2 duplicate, 0 unknown decision, -1 offer not in the decision, -2 sealed
-- with a key that is not the user's (nothing written but on 1).
-- A recent decision is the member "id|,o1,o2,|~stage~channel~segments|outcomes" of KEYS[1]
-- (every score 0; decisions logged before issue 13 have no "~stage~channel~segments|" and
-- count no offer performance).
local prefix = ARGV[1] .. '|'
local found = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. prefix, '(' .. ARGV[1] .. '}', 'LIMIT', 0, 1)
local member, d, legacy = found[1], nil, false
if member then
  d = string.sub(member, #prefix + 1)
else
  d = redis.call('HGET', KEYS[8], ARGV[1])
  if not d then return 0 end
  legacy = true
end
local bar = string.find(d, '|', 1, true)
if not string.find(string.sub(d, 1, bar), ',' .. ARGV[2] .. ',', 1, true) then return -1 end
local mark = ARGV[2] .. ':' .. ARGV[5] .. '|'
if string.find(d, '|' .. mark, 1, true) then return 2 end
if log_full(KEYS[2], ARGV[4]) then return redis.error_reply(LOG_FULL) end
if not user_key(KEYS[6], KEYS[7], ARGV[8]) then return -2 end
if legacy then
  redis.call('HSET', KEYS[8], ARGV[1], d .. mark)
else
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZADD', KEYS[1], 0, member .. mark)
end
if ARGV[5] == 'dismiss' or ARGV[5] == 'accept' then
  local field = ARGV[5] .. ':' .. ARGV[2]
  local prev = tonumber(redis.call('HGET', KEYS[3], field) or '0')
  if tonumber(ARGV[6]) > prev then redis.call('HSET', KEYS[3], field, ARGV[6]) end
  redis.call('PEXPIRE', KEYS[3], ARGV[7])
end
attribute(KEYS[4], KEYS[5], 11)
-- Offer performance in the decision's stage and channel, and per segment in its stage
-- (domain::funnel::outcome_counts).
local stage, channel, segments = string.match(d, '|~([^~|]*)~([^~|]*)~([^|]*)|')
if stage then
  local fields = {'o|' .. ARGV[2] .. '|' .. stage .. '|' .. channel .. '|'}
  for s in string.gmatch(segments, '[^,]+') do
    fields[#fields + 1] = 'g|' .. s .. '|' .. ARGV[2] .. '|' .. stage .. '|'
  end
  for _, field in ipairs(fields) do
    redis.call('HINCRBY', KEYS[9], field .. ARGV[5], 1)
    if ARGV[5] == 'conversion' and tonumber(ARGV[10]) ~= 0 then
      redis.call('HINCRBYFLOAT', KEYS[9], field .. 'revenue', ARGV[10])
    end
  end
  redis.call('PEXPIREAT', KEYS[9], ARGV[9])
end
log_add(KEYS[2], ARGV[4], 'kind', 'outcome', 'id', ARGV[1], 'kid',
  string.match(ARGV[8], '^%a+:([^:]*)'), 'enc', ARGV[3])
return 1

#!lua
-- Logs a decision if its contact guard still holds: records the contacts, appends to the
-- decision log, remembers the decision for outcome linking and records first exposures.
-- The guard re-counts contacts here, atomically with recording the new ones.
-- A recent decision is the member "id|,o1,o2,|~stage~channel~s1,s2|" of KEYS[1] (outcomes
-- are appended to it: "id|,o1,o2,|~stage~channel~s1,s2|o1:click|").
-- Needs user_key.lua, count.lua and log.lua prepended.
-- KEYS (DecisionArgs): 1 recent decisions, 2 decision log, 3 contacts, 4 exposures,
--       5 experiment counters, 6 sealing key, 7 keyring, 8 the log shard's record
--       dictionaries, 9.. the counter keys (count.lua).
-- ARGV: 1 decision id, 2 now, 3 ",offers,|", 4 recent decisions kept, 5 record sealed (raw bytes),
--       6 decision log maxlen, 7 ttl ms, 8 channel, 9 keep contacts since,
--       10 write by (ms since the epoch, '' = no deadline), 11 sealing key (user_key's arg),
--       12 the record's dictionary id, 13 the dictionary ('' when the caller knows it is stored),
--       14 the decision id and 15 the key id as raw bytes (the log entry's `id` and `kid`),
--       16 nlimits, (max, since)..., ncaps, (offer, max, since)..., noffers, offer...,
--       nexposures, (experiment, variant)..., the counter arguments.
-- Returns 1 when logged, 0 when the guard no longer holds, -1 when Redis's clock is past
-- "write by" (the caller was already answered with a fallback), -2 when the record was sealed
-- with a key that is not the user's, -3 when the record's dictionary was not sent and is not
-- stored (the caller sends it and tries again); nothing written on 0, -1, -2 or -3 but a new
-- user's sealing key (kept: the same key is sent again).
if ARGV[10] ~= '' then
  -- A shebang script may read TIME before writing (effects are replicated, not the script).
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[10]) then return -1 end
end
local i = 16
local limits, caps, offers = {}, {}, {}
for k = 1, tonumber(ARGV[i]) do limits[k] = {tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])}; i = i + 2 end
i = i + 1
for k = 1, tonumber(ARGV[i]) do caps[k] = {ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])}; i = i + 3 end
i = i + 1
for k = 1, tonumber(ARGV[i]) do offers[k] = ARGV[i + k] end
i = i + #offers + 1
local exposures = {}
for k = 1, tonumber(ARGV[i]) do exposures[k] = {ARGV[i + 2 * k - 1], ARGV[i + 2 * k]} end
local counts_at = i + 2 * #exposures + 1
if #limits > 0 or #caps > 0 then
  local since = math.huge
  for _, l in ipairs(limits) do since = math.min(since, l[2]) end
  for _, c in ipairs(caps) do since = math.min(since, c[3]) end
  local m = redis.call('ZRANGEBYSCORE', KEYS[3], since, '+inf', 'WITHSCORES')
  for _, l in ipairs(limits) do
    local seen, n = {}, 0
    for j = 1, #m, 2 do
      local d, ch = string.match(m[j], '^([^|]*)|([^|]*)|')
      if ch == ARGV[8] and tonumber(m[j + 1]) >= l[2] and not seen[d] then seen[d] = true; n = n + 1 end
    end
    if n >= l[1] then return 0 end
  end
  for _, c in ipairs(caps) do
    local n = 0
    for j = 1, #m, 2 do
      local o = string.match(m[j], '^[^|]*|[^|]*|(.*)$')
      if o == c[1] and tonumber(m[j + 1]) >= c[3] then n = n + 1 end
    end
    if n >= c[2] then return 0 end
  end
end
if log_full(KEYS[2], ARGV[6]) then return redis.error_reply(LOG_FULL) end
if not user_key(KEYS[6], KEYS[7], ARGV[11]) then return -2 end
-- The record's dictionary is stored before the record: sent when the caller does not know it
-- to be there, checked when it does (a Redis that lost data, a failover) so that no logged
-- record names a dictionary that is not stored.
if ARGV[13] ~= '' then
  redis.call('HSETNX', KEYS[8], ARGV[12], ARGV[13])
elseif redis.call('HEXISTS', KEYS[8], ARGV[12]) == 0 then
  return -3
end
if #offers > 0 then
  for _, o in ipairs(offers) do redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1] .. '|' .. ARGV[8] .. '|' .. o) end
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[9])
  -- Contacts live at least as long as the longest window that counts them.
  redis.call('PEXPIRE', KEYS[3], math.max(tonumber(ARGV[7]), tonumber(ARGV[2]) - tonumber(ARGV[9]) + 86400000))
end
log_add(KEYS[2], ARGV[6], 'kind', 'decision', 'id', ARGV[14], 'kid', ARGV[15], 'bin', ARGV[5])
-- The recent decisions: scores all 0, so the set is in member order, which is id order, which
-- is time order (UUID v7); keep the newest ARGV[4].
redis.call('ZADD', KEYS[1], 0, ARGV[1] .. '|' .. ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[4]) - 1)
redis.call('PEXPIRE', KEYS[1], ARGV[7])
for _, e in ipairs(exposures) do
  local prefix = e[1] .. '|' .. e[2] .. '|'
  redis.call('HINCRBY', KEYS[5], prefix .. 'decisions', 1)
  if redis.call('HSETNX', KEYS[4], e[1], e[2] .. '|' .. ARGV[2]) == 1 then
    redis.call('HINCRBY', KEYS[5], prefix .. 'exposed', 1)
  end
end
count(9, counts_at)
-- Exposures do not expire: a user must never be counted as newly exposed again
-- (DeleteProfile removes them).
return 1

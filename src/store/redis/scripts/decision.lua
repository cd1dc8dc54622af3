#!lua
-- Logs decisions, each if its contact guard still holds: records the contacts, appends to the
-- decision log, remembers the decision for outcome linking and records first exposures. One
-- call carries one decision, or many (group commit, a single node only: every key below is
-- then the same for all of them but the four per-decision keys). Each decision is checked
-- and written in turn, so a later one's guard counts the contacts of an earlier one of the
-- same user; the counters of the decisions logged are summed and applied at the end.
-- The guard re-counts contacts here, atomically with recording the new ones.
-- A recent decision is the member "id|,o1,o2,|~stage~channel~s1,s2|" of its recent-decisions
-- key (outcomes are appended to it: "id|,o1,o2,|~stage~channel~s1,s2|o1:click|").
-- Needs user_key.lua, count.lua and log.lua prepended.
-- KEYS (DecisionArgs): 1 decision log, 2 experiment counters, 3 keyring, 4 the log
--       shard's record dictionaries, 5 the in-stage-now counters, 6.. the day counter hashes
--       (count.lua), then per decision: recent decisions, contacts, exposures, sealing key.
-- ARGV: 1 recent decisions kept, 2 decision log maxlen, 3 ttl ms, 4 ndicts, then per records'
--       dictionary: its id and bytes ('' when the caller knows it is stored), then the days
--       header (count.lua: ndays, expire-at...), the counters' fields table (count.lua:
--       nfields, (key index, field)...), then ndecisions, then per decision:
--       its dictionary's number (1..ndicts), decision id, now, ",offers,|", record sealed (raw bytes), channel, keep contacts
--       since, write by (ms since the epoch, '' = no deadline), sealing key (user_key's arg),
--       the decision id and the key id as raw bytes (the log entry's `id` and `kid`),
--       nlimits, (max, since)..., ncaps, (offer, max, since)..., noffers, offer...,
--       nexposures, (experiment, variant)..., its indexed counter block (count.lua).
-- Returns one answer per decision: 1 when logged, 0 when the guard no longer holds, -1 when
-- Redis's clock is past "write by" (the caller was already answered with a fallback), -2 when
-- the record was sealed with a key that is not the user's, -3 when the record's dictionary
-- was not sent and is not stored (the caller sends it and tries again); nothing of that
-- decision written on 0, -1, -2 or -3 but a new user's sealing key (kept: the same key is
-- sent again). A full log in archive mode fails the whole call (decisions before it stay
-- written, as with any error).
local clock
local function late(by)
  if by == '' then return false end
  if not clock then
    -- A shebang script may read TIME before writing (effects are replicated, not the script).
    local t = redis.call('TIME')
    clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return clock > tonumber(by)
end
-- A dictionary is stored before the first record that names it: sent when the caller does
-- not know it to be there, checked when it does (a Redis that lost data, a failover) so that
-- no logged record names a dictionary that is not stored.
local dict_ok = {}
local function dict_stored(d)
  if dict_ok[d] == nil then
    local id, bytes = ARGV[3 + 2 * d], ARGV[4 + 2 * d]
    if bytes ~= '' then
      redis.call('HSETNX', KEYS[4], id, bytes)
      dict_ok[d] = true
    else
      dict_ok[d] = redis.call('HEXISTS', KEYS[4], id) == 1
    end
  end
  return dict_ok[d]
end
-- The guard: false when a channel limit or an offer cap would be exceeded.
local function guard_holds(contacts, channel, limits, caps)
  if #limits == 0 and #caps == 0 then return true end
  local since = math.huge
  for _, l in ipairs(limits) do since = math.min(since, l[2]) end
  for _, c in ipairs(caps) do since = math.min(since, c[3]) end
  local m = redis.call('ZRANGEBYSCORE', contacts, since, '+inf', 'WITHSCORES')
  for _, l in ipairs(limits) do
    local seen, n = {}, 0
    for j = 1, #m, 2 do
      local d, ch = string.match(m[j], '^([^|]*)|([^|]*)|')
      if ch == channel and tonumber(m[j + 1]) >= l[2] and not seen[d] then seen[d] = true; n = n + 1 end
    end
    if n >= l[1] then return false end
  end
  for _, c in ipairs(caps) do
    local n = 0
    for j = 1, #m, 2 do
      local o = string.match(m[j], '^[^|]*|[^|]*|(.*)$')
      if o == c[1] and tonumber(m[j + 1]) >= c[3] then n = n + 1 end
    end
    if n >= c[2] then return false end
  end
  return true
end
-- Experiment counters of the logged decisions, summed per field.
local xorder, xsum = {}, {}
local function xcount(field, by)
  if xsum[field] == nil then xorder[#xorder + 1] = field; xsum[field] = 0 end
  xsum[field] = xsum[field] + by
end
local days = 5 + 2 * tonumber(ARGV[4])
local ndays = tonumber(ARGV[days])
local first = 5 + ndays
local acc, i = counts_new(days + ndays + 1)
local results, logged = {}, false
local n = tonumber(ARGV[i])
i = i + 1
for d = 1, n do
  local kb = first + 4 * (d - 1)
  local recent, contacts, exposures_key, kkey = KEYS[kb + 1], KEYS[kb + 2], KEYS[kb + 3], KEYS[kb + 4]
  local dict, id, now, member, sealed, channel, keep_since, by, seal, raw_id, raw_kid =
    tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6],
    ARGV[i + 7], ARGV[i + 8], ARGV[i + 9], ARGV[i + 10]
  i = i + 11
  local limits, caps, offers, exposures = {}, {}, {}, {}
  for k = 1, tonumber(ARGV[i]) do limits[k] = {tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])}; i = i + 2 end
  i = i + 1
  for k = 1, tonumber(ARGV[i]) do caps[k] = {ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])}; i = i + 3 end
  i = i + 1
  for k = 1, tonumber(ARGV[i]) do offers[k] = ARGV[i + k] end
  i = i + #offers + 1
  for k = 1, tonumber(ARGV[i]) do exposures[k] = {ARGV[i + 2 * k - 1], ARGV[i + 2 * k]} end
  local counts_at = i + 2 * #exposures + 1
  i = count_skip(counts_at)
  local r
  if late(by) then
    r = -1
  elseif not guard_holds(contacts, channel, limits, caps) then
    r = 0
  elseif log_full(KEYS[1], ARGV[2]) then
    return redis.error_reply(LOG_FULL)
  elseif not user_key(kkey, KEYS[3], seal) then
    r = -2
  elseif not dict_stored(dict) then
    r = -3
  else
    r = 1
    if #offers > 0 then
      local z = {}
      for _, o in ipairs(offers) do z[#z + 1] = now; z[#z + 1] = id .. '|' .. channel .. '|' .. o end
      redis.call('ZADD', contacts, unpack(z))
      redis.call('ZREMRANGEBYSCORE', contacts, '-inf', '(' .. keep_since)
      -- Contacts live at least as long as the longest window that counts them.
      redis.call('PEXPIRE', contacts, math.max(tonumber(ARGV[3]), tonumber(now) - tonumber(keep_since) + 86400000))
    end
    log_add(KEYS[1], ARGV[2], 'kind', 'decision', 'id', raw_id, 'kid', raw_kid, 'bin', sealed)
    -- The recent decisions: scores all 0, so the set is in member order, which is id order,
    -- which is time order (UUID v7); keep the newest ARGV[1].
    redis.call('ZADD', recent, 0, id .. '|' .. member)
    redis.call('ZREMRANGEBYRANK', recent, 0, -tonumber(ARGV[1]) - 1)
    redis.call('PEXPIRE', recent, ARGV[3])
    for _, e in ipairs(exposures) do
      local prefix = e[1] .. '|' .. e[2] .. '|'
      xcount(prefix .. 'decisions', 1)
      if redis.call('HSETNX', exposures_key, e[1], e[2] .. '|' .. now) == 1 then xcount(prefix .. 'exposed', 1) end
    end
    count_add(acc, counts_at)
    logged = true
  end
  results[d] = r
end
for _, f in ipairs(xorder) do redis.call('HINCRBY', KEYS[2], f, xsum[f]) end
if logged then count_apply(acc, 5, days) end
-- Exposures do not expire: a user must never be counted as newly exposed again
-- (DeleteProfile removes them).
return results

-- The write-time funnel and offer counters (domain::funnel), applied with the write that
-- causes them. Prepended to the scripts that count.
-- A counter block (CountArgs) is: ncounts, (key index, field, increment)... where key index 0
-- is the in-stage-now counter hash of the slot and d the d-th day hash. An increment with a
-- '.' or an exponent is a float (revenue).
-- The days header (CountArgs) is: ndays, expire-at (ms) of each day hash...
-- KEYS[base]: the in-stage-now hash; KEYS[base + 1..]: the day hashes, in the header's order.
--
-- count(base, i): a days header and one counter block at ARGV[i], applied as they come (a
-- user's commit, whose counts seldom repeat a field); returns the ARGV index after them.
-- For many decisions in one call (DecisionArgs), the fields are named once: a fields table
-- (nfields, (key index, field)...) and per decision an indexed block (nints, (field number,
-- whole increment)..., nfloats, (field number, float increment)...). counts_new(i) reads the
-- table at ARGV[i] and returns an empty tally and the index after the table; count_skip(i)
-- returns the index after the indexed block at ARGV[i]; count_add(acc, i) adds that block to
-- the tally (numbers only: no strings built or matched per count); count_apply(acc, base,
-- days) applies the tally, one HINCRBY per field, and sets the expiry of the day hashes from
-- the days header at ARGV[days].
local function count(base, i)
  local ndays = tonumber(ARGV[i])
  local j = i + ndays + 1
  local n = tonumber(ARGV[j])
  for k = 1, n do
    local key, field, by = KEYS[base + tonumber(ARGV[j + 3 * k - 2])], ARGV[j + 3 * k - 1], ARGV[j + 3 * k]
    if string.find(by, '[.eE]') then
      redis.call('HINCRBYFLOAT', key, field, by)
    else
      redis.call('HINCRBY', key, field, by)
    end
  end
  for d = 1, ndays do redis.call('PEXPIREAT', KEYS[base + d], ARGV[i + d]) end
  return j + 3 * n + 1
end
local function counts_new(i)
  local n = tonumber(ARGV[i])
  return {at = i, n = n, ints = {}, floats = {}}, i + 2 * n + 1
end
local function count_skip(i)
  i = i + 2 * tonumber(ARGV[i]) + 1
  return i + 2 * tonumber(ARGV[i]) + 1
end
local function count_add(acc, i)
  local ints = acc.ints
  for k = 1, tonumber(ARGV[i]) do
    local f = tonumber(ARGV[i + 2 * k - 1])
    ints[f] = (ints[f] or 0) + tonumber(ARGV[i + 2 * k])
  end
  i = i + 2 * tonumber(ARGV[i]) + 1
  for k = 1, tonumber(ARGV[i]) do
    acc.floats[#acc.floats + 1] = {tonumber(ARGV[i + 2 * k - 1]), ARGV[i + 2 * k]}
  end
end
local function count_apply(acc, base, days)
  local function key(f) return KEYS[base + tonumber(ARGV[acc.at + 2 * f - 1])], ARGV[acc.at + 2 * f] end
  for f = 1, acc.n do
    local by = acc.ints[f]
    if by then
      local k, field = key(f)
      redis.call('HINCRBY', k, field, string.format('%d', by))
    end
  end
  for _, x in ipairs(acc.floats) do
    local k, field = key(x[1])
    redis.call('HINCRBYFLOAT', k, field, x[2])
  end
  for d = 1, tonumber(ARGV[days]) do redis.call('PEXPIREAT', KEYS[base + d], ARGV[days + d]) end
end

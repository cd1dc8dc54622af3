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
-- For many decisions in one call: counts_new() makes an empty tally; count_add(acc, i) adds
-- the counter block at ARGV[i] to it (whole increments of one field summed, so the call sends
-- one HINCRBY per field) and returns the ARGV index after it; count_apply(acc, base, days)
-- applies the tally and sets the expiry of the day hashes from the days header at ARGV[days].
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
local function counts_new()
  return {order = {}, ints = {}, floats = {}}
end
local function count_add(acc, i)
  local n = tonumber(ARGV[i])
  for k = 1, n do
    local key, field, by = ARGV[i + 3 * k - 2], ARGV[i + 3 * k - 1], ARGV[i + 3 * k]
    if string.find(by, '[.eE]') then
      acc.floats[#acc.floats + 1] = {key, field, by}
    else
      -- The key index has no '|', so "index|field" names one field of one hash.
      local id = key .. '|' .. field
      if acc.ints[id] == nil then
        acc.order[#acc.order + 1] = {key, field, id}
        acc.ints[id] = 0
      end
      acc.ints[id] = acc.ints[id] + tonumber(by)
    end
  end
  return i + 3 * n + 1
end
local function count_apply(acc, base, days)
  for _, o in ipairs(acc.order) do
    redis.call('HINCRBY', KEYS[base + tonumber(o[1])], o[2], string.format('%d', acc.ints[o[3]]))
  end
  for _, f in ipairs(acc.floats) do redis.call('HINCRBYFLOAT', KEYS[base + tonumber(f[1])], f[2], f[3]) end
  for d = 1, tonumber(ARGV[days]) do redis.call('PEXPIREAT', KEYS[base + d], ARGV[days + d]) end
end

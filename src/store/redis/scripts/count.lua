-- count(base, i): the write-time funnel and offer counters (domain::funnel), applied with the
-- write that causes them. Prepended to the scripts that call it.
-- KEYS[base]: the in-stage-now counter hash of the user's slot; KEYS[base + 1..]: the day
-- counter hashes (in the user's slot). Reads from ARGV[i] on (CountArgs): ndays, expire-at
-- (ms) of each day hash..., ncounts, (key 0 = in-stage-now or d = the d-th day hash, field,
-- increment)... An increment with a '.' or an exponent is a float (revenue).
-- Returns the ARGV index after its arguments.
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

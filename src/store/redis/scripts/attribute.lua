-- attribute(xkey, ckey, i): attribution of visits and conversions to experiment variants
-- (the rule of domain::experiment::attribute). Prepended to the scripts that call it.
-- xkey: the user's exposures hash; ckey: the experiment-counter hash of the user's slot.
-- Reads from ARGV[i] on (AttributionArgs): nwindows, (experiment, window ms)...,
-- nhappenings, (kind v|c, time, value)...
local function attribute(xkey, ckey, i)
  local windows, happenings = {}, {}
  for k = 1, tonumber(ARGV[i]) do windows[k] = {ARGV[i + 2 * k - 1], tonumber(ARGV[i + 2 * k])} end
  i = i + 2 * #windows + 1
  for k = 1, tonumber(ARGV[i]) do happenings[k] = {ARGV[i + 3 * k - 2], tonumber(ARGV[i + 3 * k - 1]), tonumber(ARGV[i + 3 * k])} end
  if #happenings == 0 then return end
  for _, w in ipairs(windows) do
    local rec = redis.call('HGET', xkey, w[1])
    if rec then
      local variant, first = string.match(rec, '^(.*)|(%-?%d+)$')
      first = tonumber(first)
      local prefix = w[1] .. '|' .. variant .. '|'
      for _, h in ipairs(happenings) do
        if h[2] >= first and h[2] <= first + w[2] then
          if h[1] == 'v' then
            if redis.call('HSETNX', xkey, w[1] .. ':v', 1) == 1 then redis.call('HINCRBY', ckey, prefix .. 'visitors', 1) end
          else
            if redis.call('HSETNX', xkey, w[1] .. ':c', 1) == 1 then redis.call('HINCRBY', ckey, prefix .. 'converters', 1) end
            if h[3] ~= 0 then
              -- The user's revenue as a double, exactly as the in-memory store keeps it.
              local before = tonumber(redis.call('HGET', xkey, w[1] .. ':r') or '0')
              local r = before + h[3]
              redis.call('HSET', xkey, w[1] .. ':r', string.format('%.17g', r))
              redis.call('HINCRBYFLOAT', ckey, prefix .. 'revenue', h[3])
              redis.call('HINCRBYFLOAT', ckey, prefix .. 'revenue_sq', r * r - before * before)
            end
          end
        end
      end
    end
  end
end

-- The log streams' cap (the Rust side's LogCap argument): 'N' trims the stream to about N
-- entries as it grows (XADD MAXLEN ~); 'aN' is archive mode: only the archiver trims, after it
-- has archived and acknowledged, and a write that would grow the stream past N entries is
-- refused before anything is written (an OOM error: the client retries later).
local LOG_FULL = 'OOM the log stream is at its cap (redis.archive is on and the archiver is behind): nothing written'
local function log_full(key, cap)
  return string.sub(cap, 1, 1) == 'a' and redis.call('XLEN', key) >= tonumber(string.sub(cap, 2))
end
local function log_add(key, cap, ...)
  if string.sub(cap, 1, 1) == 'a' then return redis.call('XADD', key, '*', ...) end
  return redis.call('XADD', key, 'MAXLEN', '~', cap, '*', ...)
end

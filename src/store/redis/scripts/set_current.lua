#!lua
-- Points a model's `current` at a version, remembering the previous one for rollback.
-- Re-pointing to the version already current is a no-op (no history entry).
-- KEYS (SetCurrentArgs): 1 current, 2 history.
-- ARGV: 1 version.
-- Returns 1.
local prev = redis.call('GET', KEYS[1])
if prev and prev ~= ARGV[1] then redis.call('RPUSH', KEYS[2], prev) end
redis.call('SET', KEYS[1], ARGV[1])
return 1

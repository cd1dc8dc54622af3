#!lua
-- Moves a model's `current` back to the previous version.
-- KEYS (RollbackArgs): 1 current, 2 history.
-- ARGV: none.
-- Returns the version now current, or nil when there is no earlier version.
local prev = redis.call('RPOP', KEYS[2])
if not prev then return false end
redis.call('SET', KEYS[1], prev)
return prev

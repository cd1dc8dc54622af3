-- user_key(kkey, ring, arg): makes sure the user's log-sealing key (crypto-shredding, see
-- seal.rs) is the one the caller sealed with. Prepended to the scripts that call it.
-- kkey: the user's `:k` key; ring: the keyring hash of the user's slot; arg: `new:kid:hex`
-- for a key the caller just generated, `known:kid:hex` for one it read from `:k`.
-- A new key is stored (with its keyring entry) only when the user has none; a known key must
-- still be the stored one (after an erasure it is gone: an old key is never stored again, so
-- entries sealed before the erasure stay unreadable). False: the caller reloads and seals again.
local function user_key(kkey, ring, arg)
  local mode, value = string.match(arg, '^(%a+):(.*)$')
  local cur = redis.call('GET', kkey)
  if cur then return cur == value end
  if mode ~= 'new' then return false end
  local kid, key = string.match(value, '^([^:]*):(.*)$')
  redis.call('SET', kkey, value)
  redis.call('HSET', ring, kid, key)
  return true
end

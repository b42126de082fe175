"""The Lua scripts behind :class:`lookalike.store.redis_meta.RedisMetadata`.

Each script is one atomic step over many keys. Item hashes live at ``NS:item:{id}`` with a
``state`` of ``pending`` (claimed by ``token`` until ``deadline``, Redis server time),
``ready`` or ``deleting``; ``NS:ids`` is the sorted set of ready ids and ``NS:labels`` the
count of ready items per label ("" = no label, not counted). Times come from Redis ``TIME``,
so the replicas' clocks do not matter.

Scripts that write items take KEYS = (NS:ids, NS:labels, item keys...) and, after their own
leading arguments, :data:`ITEM_FIELDS` values per item (the id first). A script that is run
twice (a client retry after a lost connection) leaves the same result as once.

Redis refuses a script's first denied-on-OOM write when it is out of memory but lets a script
that has written go on; so the scripts that add data write a hash field (HSET) or a label count
first, so that a full Redis refuses them whole, and removals ZREM first, so that they still
work. A ready item's hash is rewritten field by field (every field is set), not deleted first.
"""

from __future__ import annotations

# The stored fields of an item, in the order the scripts receive them (after the id).
ITEM_FIELDS = (
    "path",
    "url",
    "label",
    "metadata",
    "source",
    "size",
    "width",
    "height",
    "added_at",
    "vector",  # raw bytes, "" when the collection keeps no vectors in Redis: redis_records
)
STRIDE = 1 + len(ITEM_FIELDS)

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

_FIELDS = "local FIELDS = {" + ", ".join(f"'{name}'" for name in ITEM_FIELDS) + "}\n"

# Write item number i (1-based) of ARGV from offset `base` as ready.
_WRITE_READY = (
    _FIELDS
    + """
local function label_add(label, delta)
  if label == false or label == nil or label == '' then return end
  local n = redis.call('HINCRBY', KEYS[2], label, delta)
  if n <= 0 then redis.call('HDEL', KEYS[2], label) end
end

local function write_ready(key, base, token)
  local id = ARGV[base]
  local args = {'state', 'ready', 'token', token}
  for f = 1, #FIELDS do
    args[#args + 1] = FIELDS[f]
    args[#args + 1] = ARGV[base + f]
  end
  redis.call('HSET', key, unpack(args))
  redis.call('HDEL', key, 'deadline')
  redis.call('ZADD', KEYS[1], 0, id)
  label_add(ARGV[base + 3], 1)
end
"""
)

# KEYS: item keys. ARGV: token, lease seconds. Returns 0 when every item is now pending under
# the token, else the 1-based position of the first item that is ready or pending under another
# live claim (nothing changed then).
CLAIM = (
    _NOW
    + """
local token = ARGV[1]
for i, key in ipairs(KEYS) do
  local f = redis.call('HMGET', key, 'state', 'token', 'deadline')
  if f[1] == 'ready' then return i end
  if f[1] == 'pending' and f[2] ~= token and (tonumber(f[3]) or 0) > now then return i end
end
local deadline = tostring(now + tonumber(ARGV[2]))
for _, key in ipairs(KEYS) do
  redis.call('HSET', key, 'state', 'pending', 'token', token, 'deadline', deadline)
end
return 0
"""
)

# KEYS: NS:ids, NS:labels, item keys. ARGV: token, then STRIDE values per item. The items
# still pending under the token (expired or not) become ready; returns the 1-based positions
# of those that are not (another claim or an owner's put took them; left untouched). An item
# already ready under the same token (a retried commit) counts as committed.
COMMIT = (
    _WRITE_READY
    + """
local token = ARGV[1]
local lost = {}
for i = 3, #KEYS do
  local f = redis.call('HMGET', KEYS[i], 'state', 'token')
  local base = 2 + (i - 3) * STRIDE
  if f[2] == token and f[1] == 'pending' then
    write_ready(KEYS[i], base, token)
  elseif not (f[2] == token and f[1] == 'ready') then
    lost[#lost + 1] = i - 2
  end
end
return lost
"""
).replace("STRIDE", str(STRIDE))

# KEYS: NS:ids, NS:labels, item keys. ARGV: STRIDE values per item. Writes every item as ready
# whatever its state, moving the label count off the old label if the old item was ready.
PUT = (
    _WRITE_READY
    + """
for i = 3, #KEYS do
  local f = redis.call('HMGET', KEYS[i], 'state', 'label')
  if f[1] == 'ready' then label_add(f[2], -1) end
  write_ready(KEYS[i], 1 + (i - 3) * STRIDE, '')
end
return #KEYS - 2
"""
).replace("STRIDE", str(STRIDE))

# KEYS: item keys. ARGV: token. Drops the pending claims the token still holds.
RELEASE = """
local n = 0
for _, key in ipairs(KEYS) do
  local f = redis.call('HMGET', key, 'state', 'token')
  if f[1] == 'pending' and f[2] == ARGV[1] then
    redis.call('DEL', key)
    n = n + 1
  end
end
return n
"""

# KEYS: NS:ids, NS:labels, item keys. ARGV: the ids. Returns the 1-based positions of the
# items neither ready nor deleting (nothing changed then); else marks the ready ones deleting,
# out of NS:ids and of the label counts, and returns an empty list.
BEGIN_REMOVE = (
    _WRITE_READY
    + """
local missing = {}
for i = 3, #KEYS do
  local state = redis.call('HGET', KEYS[i], 'state')
  if state ~= 'ready' and state ~= 'deleting' then missing[#missing + 1] = i - 2 end
end
if #missing > 0 then return missing end
for i = 3, #KEYS do
  local f = redis.call('HMGET', KEYS[i], 'state', 'label')
  if f[1] == 'ready' then
    redis.call('ZREM', KEYS[1], ARGV[i - 2])
    redis.call('HSET', KEYS[i], 'state', 'deleting')
    label_add(f[2], -1)
  end
end
return missing
"""
)

# KEYS: item keys. Deletes those still deleting (a claim may have taken one meanwhile).
FINISH_REMOVE = """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('HGET', key, 'state') == 'deleting' then
    redis.call('DEL', key)
    n = n + 1
  end
end
return n
"""

# KEYS: NS:meta. ARGV: format, identity JSON. Stores both if the namespace has no identity
# yet; returns {format, identity} as stored (the new ones on first use).
BIND = """
local f = redis.call('HMGET', KEYS[1], 'format', 'identity')
if f[2] == false then
  if f[1] == false then f[1] = ARGV[1] end
  redis.call('HSET', KEYS[1], 'format', f[1], 'identity', ARGV[2])
  return {f[1], ARGV[2]}
end
return {f[1] or '', f[2]}
"""

# KEYS[1] the value, ARGV[1] a decimal integer: keep the larger (compared as decimal strings:
# Milvus timestamps pass 2**53, beyond Lua's exact numbers)
RAISE = """
local old = redis.call('GET', KEYS[1]) or '0'
local new = ARGV[1]
if #new > #old or (#new == #old and new > old) then redis.call('SET', KEYS[1], new) end
return 1
"""

# KEYS: item hashes. ARGV: field names. One HMGET reply per key (nil for a missing field):
# one command, so the client packs and parses one request however many items it reads.
READ = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HMGET', key, unpack(ARGV)) end
return out
"""

# KEYS: item hashes. ARGV[1]: a field name. Its value per key, nil where it has none.
READ_ONE = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGET', key, ARGV[1]) end
return out
"""

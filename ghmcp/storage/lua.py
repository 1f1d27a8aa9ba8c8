"""The Redis store's atomic steps, as Lua scripts: Redis runs each one without interleaving any
other command, so a script is the Redis form of one SQLite transaction.

Every script takes the key prefix as ARGV[1] and builds its keys from it (a single Redis, or one
primary: these scripts are not written for Redis Cluster). Times are Unix seconds, as passed by
the caller, exactly like the SQLite store; key TTLs follow the same deadlines.
"""

from __future__ import annotations

# Shared helpers, prepended to every script.
PRELUDE = """
local p = ARGV[1]

-- Keep `key` at least until `at` (seconds): an index lives as long as its longest-lived member.
local function extend(key, at)
  local ms = math.ceil(at * 1000)
  local current = redis.call('PEXPIRETIME', key)
  if current >= 0 and current < ms then redis.call('PEXPIREAT', key, ms) end
  if current == -1 then redis.call('PEXPIREAT', key, ms) end
end

-- Store tokens (hash, kind, family, generation, expiry) from ARGV[first]; a stored one is left as it is.
local function add_tokens(first)
  local i = first
  while i <= #ARGV do
    local key = p .. 'token:' .. ARGV[i]
    local expires_at = tonumber(ARGV[i + 4])
    local family = p .. 'family:' .. ARGV[i + 2]
    local grant_id = redis.call('HGET', family, 'grant_id')
    -- A token of a family that is gone (revoked and dropped) would be an orphan: it is not stored.
    if grant_id and redis.call('EXISTS', key) == 0 then
      redis.call('HSET', key, 'kind', ARGV[i + 1], 'family_id', ARGV[i + 2], 'generation', ARGV[i + 3],
        'expires_at', ARGV[i + 4])
      redis.call('PEXPIREAT', key, math.ceil(expires_at * 1000))
      redis.call('SADD', p .. 'family-tokens:' .. ARGV[i + 2], ARGV[i])
      extend(p .. 'family-tokens:' .. ARGV[i + 2], expires_at)
      extend(family, expires_at)
      extend(p .. 'grant-families:' .. grant_id, expires_at)
    end
    i = i + 5
  end
end

-- A revoked family is dropped at once, with every token it issued: a revoked token is never used
-- again, so keeping it until its TTL (up to the refresh lifetime) would only grow the store.
local function drop_family(family_id)
  local family = p .. 'family:' .. family_id
  local grant_id = redis.call('HGET', family, 'grant_id')
  for _, token_hash in ipairs(redis.call('SMEMBERS', p .. 'family-tokens:' .. family_id)) do
    redis.call('DEL', p .. 'token:' .. token_hash)
  end
  redis.call('DEL', family, p .. 'family-tokens:' .. family_id)
  if grant_id then redis.call('SREM', p .. 'grant-families:' .. grant_id, family_id) end
  return grant_id
end

-- A grant is still needed while a live family or an unexchanged, unexpired code refers to it.
local function needed(grant_id, now)
  for _, family_id in ipairs(redis.call('SMEMBERS', p .. 'grant-families:' .. grant_id)) do
    local revoked = redis.call('HGET', p .. 'family:' .. family_id, 'revoked')
    if revoked == '0' then return true end
    if not revoked then redis.call('SREM', p .. 'grant-families:' .. grant_id, family_id) end
  end
  for _, code_hash in ipairs(redis.call('SMEMBERS', p .. 'grant-codes:' .. grant_id)) do
    local code = redis.call('HMGET', p .. 'code:' .. code_hash, 'used_at', 'expires_at')
    if code[2] and not code[1] and tonumber(code[2]) > now then return true end
    if not code[2] then redis.call('SREM', p .. 'grant-codes:' .. grant_id, code_hash) end
  end
  return false
end

-- Delete the grant unless it is needed: {grant fields, 1 if the subject holds no other grant}, or nil.
local function release(grant_id, now)
  local key = p .. 'grant:' .. grant_id
  if redis.call('EXISTS', key) == 0 or needed(grant_id, now) then return nil end
  local grant = redis.call('HGETALL', key)
  local subject = redis.call('HGET', key, 'subject')
  local pair = subject .. '\\n' .. redis.call('HGET', key, 'client_id')
  if redis.call('HGET', p .. 'grant-pairs', pair) == grant_id then redis.call('HDEL', p .. 'grant-pairs', pair) end
  redis.call('DEL', key, p .. 'grant-families:' .. grant_id, p .. 'grant-codes:' .. grant_id)
  redis.call('SREM', p .. 'grants', grant_id)
  redis.call('SREM', p .. 'subject-grants:' .. subject, grant_id)
  local last = redis.call('SCARD', p .. 'subject-grants:' .. subject) == 0 and 1 or 0
  return {grant, last}
end

-- The sorted sets a pending sign-in is counted in, in ADD_PENDING's order of caps. A record written
-- before sites were counted has no wide_origin, and is in no site's set.
local function pending_indexes(client_id, origin, wide_origin)
  local indexes = {{'client', p .. 'pending-by-client:' .. client_id}, {'origin', p .. 'pending-by-origin:' .. origin}}
  if wide_origin then indexes[#indexes + 1] = {'wide_origin', p .. 'pending-by-wide-origin:' .. wide_origin} end
  indexes[#indexes + 1] = {'total', p .. 'pending-all'}
  return indexes
end
"""

# ARGV: prefix, key, record, client_id, origin, wide_origin, expires_at,
#   cap client, cap origin, cap wide_origin, cap total, now
ADD_PENDING = """
local key, expires_at, now = ARGV[2], tonumber(ARGV[7]), tonumber(ARGV[12])
local indexes = pending_indexes(ARGV[4], ARGV[5], ARGV[6])
for n, index in ipairs(indexes) do
  redis.call('ZREMRANGEBYSCORE', index[2], '-inf', now)
  if redis.call('ZCARD', index[2]) >= tonumber(ARGV[7 + n]) then return index[1] end
end
local pending = p .. 'pending:' .. key
redis.call('HSET', pending, 'record', ARGV[3], 'stage', 'consent', 'client_id', ARGV[4], 'origin', ARGV[5],
  'wide_origin', ARGV[6], 'expires_at', ARGV[7])
redis.call('PEXPIREAT', pending, math.ceil(expires_at * 1000))
for _, index in ipairs(indexes) do
  redis.call('ZADD', index[2], expires_at, key)
  extend(index[2], expires_at)
end
return false
"""

# ARGV: prefix, key, state_hash, github_seconds, now, record ('' keeps the stored one)
APPROVE_PENDING = """
local key, seconds, now = ARGV[2], tonumber(ARGV[4]), tonumber(ARGV[5])
local pending = p .. 'pending:' .. key
local row = redis.call('HMGET', pending, 'stage', 'expires_at', 'client_id', 'origin', 'wide_origin')
if row[1] ~= 'consent' or tonumber(row[2]) <= now then return 0 end
local expires_at = math.min(now + seconds, tonumber(row[2]) + seconds)
redis.call('HSET', pending, 'stage', 'github', 'state_hash', ARGV[3], 'expires_at', string.format('%.6f', expires_at))
if ARGV[6] ~= '' then redis.call('HSET', pending, 'record', ARGV[6]) end
redis.call('PEXPIREAT', pending, math.ceil(expires_at * 1000))
redis.call('SET', p .. 'pending-state:' .. ARGV[3], key, 'PXAT', math.ceil(expires_at * 1000))
for _, index in ipairs(pending_indexes(row[3], row[4], row[5])) do
  redis.call('ZADD', index[2], 'XX', expires_at, key)
  extend(index[2], expires_at)
end
return 1
"""

# ARGV: prefix, key ('' to find it by state), stage, state_hash, now
TAKE_PENDING = """
local key, stage, now = ARGV[2], ARGV[3], tonumber(ARGV[5])
if stage == 'github' then
  key = redis.call('GET', p .. 'pending-state:' .. ARGV[4])
  if not key then return nil end
end
local pending = p .. 'pending:' .. key
local row = redis.call('HMGET', pending, 'stage', 'expires_at', 'client_id', 'origin', 'record', 'state_hash',
  'wide_origin')
if row[1] ~= stage or tonumber(row[2]) <= now or (stage == 'github' and row[6] ~= ARGV[4]) then return nil end
redis.call('DEL', pending)
if row[6] then redis.call('DEL', p .. 'pending-state:' .. row[6]) end
for _, index in ipairs(pending_indexes(row[3], row[4], row[7])) do redis.call('ZREM', index[2], key) end
return row[5]
"""

# ARGV: prefix, code_hash, record, grant_id, expires_at
SAVE_CODE = """
local expires_at = tonumber(ARGV[5])
local code = p .. 'code:' .. ARGV[2]
redis.call('HSET', code, 'record', ARGV[3], 'grant_id', ARGV[4], 'expires_at', ARGV[5])
redis.call('PEXPIREAT', code, math.ceil(expires_at * 1000))
redis.call('SADD', p .. 'grant-codes:' .. ARGV[4], ARGV[2])
extend(p .. 'grant-codes:' .. ARGV[4], expires_at)
"""

# ARGV: prefix, code_hash, now, family field count n, n field/value pairs, then tokens
REDEEM_CODE = """
local code_hash, now, n = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local code = p .. 'code:' .. code_hash
local row = redis.call('HMGET', code, 'used_at', 'expires_at', 'grant_id')
if not row[3] or row[1] or tonumber(row[2]) <= now then return 0 end
if redis.call('HGET', p .. 'grant:' .. row[3], 'dead') ~= '0' then return 0 end
redis.call('HSET', code, 'used_at', ARGV[3])
local fields = {}
for i = 5, 4 + 2 * n do fields[#fields + 1] = ARGV[i] end
local family_id = fields[2]  -- family_id is the first field
local family = p .. 'family:' .. family_id
redis.call('HSET', family, unpack(fields))
redis.call('SADD', p .. 'grant-families:' .. row[3], family_id)
redis.call('SADD', p .. 'code-families:' .. code_hash, family_id)
extend(p .. 'code-families:' .. code_hash, tonumber(row[2]))
add_tokens(5 + 2 * n)
return 1
"""

# ARGV: prefix, code_hash, now
REVOKE_CODE_FAMILIES = """
local now = tonumber(ARGV[3])
local grant_ids, seen = {}, {}
for _, family_id in ipairs(redis.call('SMEMBERS', p .. 'code-families:' .. ARGV[2])) do
  if redis.call('HGET', p .. 'family:' .. family_id, 'revoked') == '0' then
    local grant_id = drop_family(family_id)
    if not seen[grant_id] then seen[grant_id] = true; grant_ids[#grant_ids + 1] = grant_id end
  end
end
local released = {}
for _, grant_id in ipairs(grant_ids) do
  local r = release(grant_id, now)
  if r then released[#released + 1] = r end
end
return released
"""

# ARGV: prefix, then grant field/value pairs (grant_id, subject and client_id first)
UPSERT_GRANT = """
local grant_id, subject, client_id = ARGV[3], ARGV[5], ARGV[7]
local pair = subject .. '\\n' .. client_id
local old = redis.call('HGET', p .. 'grant-pairs', pair)
local replaced = false
if old and redis.call('EXISTS', p .. 'grant:' .. old) == 1 then
  replaced = redis.call('HGET', p .. 'grant:' .. old, 'token_enc')
  redis.call('DEL', p .. 'grant:' .. old)
  grant_id = old
end
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
fields[2] = grant_id
redis.call('HSET', p .. 'grant:' .. grant_id, unpack(fields))
redis.call('HSET', p .. 'grant-pairs', pair, grant_id)
redis.call('SADD', p .. 'grants', grant_id)
redis.call('SADD', p .. 'subject-grants:' .. subject, grant_id)
return {grant_id, replaced}
"""

# ARGV: prefix, grant_id, refresh_enc ('' for none), now, until
LEASE_GRANT_REFRESH = """
local row = redis.call('HMGET', p .. 'grant:' .. ARGV[2], 'dead', 'refresh_enc', 'refresh_lease_until')
if row[1] ~= '0' or (row[2] or '') ~= ARGV[3] or tonumber(row[3] or '0') > tonumber(ARGV[4]) then return 0 end
redis.call('HSET', p .. 'grant:' .. ARGV[2], 'refresh_lease_until', ARGV[5])
return 1
"""

# ARGV: prefix, grant_id, expected refresh_enc, then field/value pairs ('' value: the field is unset)
UPDATE_GRANT_TOKENS = """
local grant = p .. 'grant:' .. ARGV[2]
if redis.call('EXISTS', grant) == 0 or (redis.call('HGET', grant, 'refresh_enc') or '') ~= ARGV[3] then return 0 end
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', grant, ARGV[i]) else redis.call('HSET', grant, ARGV[i], ARGV[i + 1]) end
end
redis.call('HSET', grant, 'refresh_lease_until', '0')
return 1
"""

# ARGV: prefix, grant_id, expected repositories, new repositories
REPLACE_GRANT_REPOSITORIES = """
local row = redis.call('HMGET', p .. 'grant:' .. ARGV[2], 'dead', 'repositories')
if row[1] ~= '0' or (row[2] or '') ~= ARGV[3] then return 0 end
redis.call('HSET', p .. 'grant:' .. ARGV[2], 'repositories', ARGV[4])
return 1
"""

# ARGV: prefix, grant_id
KILL_GRANT = """
local grant = p .. 'grant:' .. ARGV[2]
if redis.call('EXISTS', grant) == 0 then return 0 end
redis.call('HSET', grant, 'dead', '1')
for _, family_id in ipairs(redis.call('SMEMBERS', p .. 'grant-families:' .. ARGV[2])) do
  drop_family(family_id)
end
return 1
"""

# ARGV: prefix, token_hash. A consistent snapshot of token, family and grant: three O(1) lookups,
# answered as one JSON string (one reply to parse instead of ~50).
GET_TOKEN = """
local function record(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return nil end
  local map = {}
  for i = 1, #flat, 2 do map[flat[i]] = flat[i + 1] end
  return map
end
local token = record(p .. 'token:' .. ARGV[2])
if not token then return nil end
local family = record(p .. 'family:' .. token.family_id)
if not family then return nil end
local grant = record(p .. 'grant:' .. family.grant_id)
if not grant then return nil end
return cjson.encode({token = token, family = family, grant = grant})
"""  # noqa: S105 (a script, not a password)

# ARGV: prefix, then tokens
ADD_TOKENS = """
add_tokens(2)
"""

# ARGV: prefix, family_id, from_generation, scopes, now, then tokens
ROTATE_FAMILY = """
local family = p .. 'family:' .. ARGV[2]
local row = redis.call('HMGET', family, 'generation', 'revoked')
if not row[1] or tonumber(row[1]) ~= tonumber(ARGV[3]) or row[2] ~= '0' then return 0 end
redis.call('HSET', family, 'generation', tonumber(ARGV[3]) + 1, 'rotated_at', ARGV[5], 'scopes', ARGV[4])
local issued = p .. 'family-tokens:' .. ARGV[2]
for _, token_hash in ipairs(redis.call('SMEMBERS', issued)) do  -- forget the expired ones
  if redis.call('EXISTS', p .. 'token:' .. token_hash) == 0 then redis.call('SREM', issued, token_hash) end
end
add_tokens(6)
return 1
"""

# ARGV: prefix, family_id, now. Returns {found, released or nil}.
REVOKE_FAMILY = """
if redis.call('EXISTS', p .. 'family:' .. ARGV[2]) == 0 then return {0} end
local released = release(drop_family(ARGV[2]), tonumber(ARGV[3]))
if released then return {1, released} end
return {1}
"""

# ARGV: prefix, grant_id, now. A grant that no live family and no stored code refers to any more.
SWEEP_GRANT = """
local grant_id = ARGV[2]
for _, family_id in ipairs(redis.call('SMEMBERS', p .. 'grant-families:' .. grant_id)) do
  if redis.call('HGET', p .. 'family:' .. family_id, 'revoked') == '0' then return nil end
end
for _, code_hash in ipairs(redis.call('SMEMBERS', p .. 'grant-codes:' .. grant_id)) do
  if redis.call('EXISTS', p .. 'code:' .. code_hash) == 1 then return nil end
end
return release(grant_id, tonumber(ARGV[3]))
"""

# ARGV: prefix, grant_id, subject, scopes. Only the subject's own live grant.
NARROW_GRANT = """
local grant = p .. 'grant:' .. ARGV[2]
local row = redis.call('HMGET', grant, 'subject', 'dead')
if row[1] ~= ARGV[3] or row[2] ~= '0' then return 0 end
redis.call('HSET', grant, 'scopes', ARGV[4])
return 1
"""

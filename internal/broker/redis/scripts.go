package redis

import goredis "github.com/redis/go-redis/v9"

// publishScript appends one event atomically: it checks that the log is
// still the one of this node's epoch, answers a repeated idempotency key
// with the original's sequence and fingerprint, takes the next sequence, appends the event
// to its topic's stream (id "<seq>-0") and to the fan-in stream, applies the
// topic's retention, and notes the highest sequence retention removed.
//
// KEYS: 1 epoch, 2 seq, 3 fan-in stream, 4 topic stream, 5 topic names
// (lex), 6 touched (score: last publish ms), 7 cut (score: highest removed
// seq), 8 idempotency key.
// ARGV: 1 epoch, 2 topic, 3 event bytes, 4 max events, 5 max age (µs),
// 6 idempotency window (ms), 7 fan-in window (ms), 8 "1" if keyed,
// 9 fingerprint.
//
// An idempotency key holds "<seq> <fingerprint>", or "<seq>" when the event
// had no fingerprint, as every value written before fingerprints existed.
//
// Returns {0, seq, time (µs)} for a new event, {1, seq, 0, fingerprint}
// for a duplicate.
var publishScript = goredis.NewScript(`
redis.replicate_commands()
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('HERALDEPOCH the log was reset')
end
if ARGV[8] == '1' then
  local orig = redis.call('GET', KEYS[8])
  if orig then
    local s, fp = string.match(orig, '^(%d+) ?(.*)$')
    if not s then
      return redis.error_reply('HERALDIDEM key ' .. KEYS[8] .. ' holds no sequence')
    end
    return {1, tonumber(s), 0, fp}
  end
end
local seq = redis.call('INCR', KEYS[2])
local t = redis.call('TIME')
local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ms = math.floor(us / 1000)
local sus = string.format('%d', us)
redis.call('XADD', KEYS[4], string.format('%d-0', seq), 't', sus, 'e', ARGV[3])
redis.call('XADD', KEYS[3], 'MINID', '~', string.format('%d', ms - tonumber(ARGV[7])), '*',
  's', string.format('%d', seq), 't', sus, 'e', ARGV[3])
if ARGV[8] == '1' then
  local v = string.format('%d', seq)
  if ARGV[9] ~= '' then v = v .. ' ' .. ARGV[9] end
  redis.call('SET', KEYS[8], v, 'PX', ARGV[6])
end
redis.call('ZADD', KEYS[5], 0, ARGV[2])
redis.call('ZADD', KEYS[6], ms, ARGV[2])

local function seqOf(id)
  return tonumber(string.match(id, '^(%d+)'))
end
local cut = 0
-- Count: the oldest events beyond the limit.
local max = tonumber(ARGV[4])
local len = redis.call('XLEN', KEYS[4])
if len > max then
  local old = redis.call('XRANGE', KEYS[4], '-', '+', 'COUNT', len - max)
  cut = seqOf(old[#old][1])
  redis.call('XTRIM', KEYS[4], 'MINID', string.format('%d-0', cut + 1))
end
-- Age: the oldest events older than the limit, a bounded batch per call
-- (what is left is skipped by Replay and removed by later calls).
local cutoff = us - tonumber(ARGV[5])
local function timeOf(e)
  local f = e[2]
  for i = 1, #f, 2 do
    if f[i] == 't' then return tonumber(f[i + 1]) end
  end
  return nil
end
local aged = 0
local first = redis.call('XRANGE', KEYS[4], '-', '+', 'COUNT', 1)
if first[1] and (timeOf(first[1]) or cutoff) < cutoff then
  for _, e in ipairs(redis.call('XRANGE', KEYS[4], '-', '+', 'COUNT', 32)) do
    local ts = timeOf(e)
    if ts == nil or ts >= cutoff then break end
    aged = seqOf(e[1])
  end
end
if aged > 0 then
  redis.call('XTRIM', KEYS[4], 'MINID', string.format('%d-0', aged + 1))
  if aged > cut then cut = aged end
end
if cut > 0 then
  redis.call('ZADD', KEYS[7], 'GT', cut, ARGV[2])
end
return {0, seq, us}
`)

// sweepScript forgets topics whose every event has aged out (their last
// publish is older than the age limit): it deletes their streams and notes
// their last sequence as removed. It also bounds the cut index, folding the
// lowest marks into the cut floor.
//
// KEYS: 1 touched, 2 topic names, 3 cut, 4 cut floor.
// ARGV: 1 cutoff (ms), 2 topic key prefix, 3 batch size, 4 most cut marks.
//
// Returns how many topics it forgot.
var sweepScript = goredis.NewScript(`
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, topic in ipairs(gone) do
  local key = ARGV[2] .. topic
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if last[1] then
    local seq = tonumber(string.match(last[1][1], '^(%d+)'))
    redis.call('ZADD', KEYS[3], 'GT', seq, topic)
  end
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[2], topic)
  redis.call('ZREM', KEYS[1], topic)
end
local extra = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[4])
if extra > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[3], extra)
  local floor = tonumber(popped[#popped])
  local cur = tonumber(redis.call('GET', KEYS[4]) or '0')
  if floor > cur then
    redis.call('SET', KEYS[4], string.format('%d', floor))
  end
end
return #gone
`)

// positionScript reads where the log is now: the last sequence and the id
// of the fan-in stream's last entry, at one instant.
//
// KEYS: 1 epoch, 2 seq, 3 fan-in stream. ARGV: 1 epoch.
var positionScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('HERALDEPOCH the log was reset')
end
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local id = '0-0'
if last[1] then id = last[1][1] end
return {seq, id}
`)

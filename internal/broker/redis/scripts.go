package redis

import goredis "github.com/redis/go-redis/v9"

// publishScript appends a run of events atomically, one after the other in
// the order given. It checks once that the log is still the one of this
// node's epoch; answers a repeated idempotency key with the original's
// sequence and fingerprint (a key repeated within the run included); takes
// the run's sequences with one INCRBY; appends each new event to its
// topic's stream (id "<seq>-0") and to the fan-in stream; and then, once
// per topic of the run, applies the topic's retention and notes the
// highest sequence retention removed, as doing so after each event would
// leave it. One call is one round trip however many events it carries,
// and Redis runs no other command in between, so events keep the order of
// the run.
//
// Retention by count lets a topic of MaxEvents events run over by an
// eighth of them (the slack) before it trims back to MaxEvents, so that a
// busy topic is trimmed, its removal noted, once per slack appends rather
// than on every one; Replay never serves the extra events (replay.go).
// Retention by age looks at a topic's oldest event only when the run
// trims the topic by count or holds an event of the topic whose sequence
// is a multiple of ageCheckEvery: events older than MaxAge that no publish
// has trimmed yet are skipped by Replay, and a topic whose last publish
// aged out is forgotten by the sweeper, so what the check costs is spent
// on reclaiming memory only, bounded by the count.
//
// KEYS: 1 epoch, 2 seq, 3 fan-in stream, 4 topic names (lex), 5 touched
// (score: last publish ms), 6 cut (score: highest removed seq); then for
// each event i (from 0) 7+2i its topic stream and 8+2i its idempotency key.
// ARGV: 1 epoch, 2 max events, 3 max age (µs), 4 idempotency window (ms),
// 5 fan-in window (ms), 6 ageCheckEvery; then for each event 7+4i topic,
// 8+4i event bytes, 9+4i "1" if keyed, 10+4i fingerprint.
//
// An idempotency key holds "<seq> <fingerprint>", or "<seq>" when the event
// had no fingerprint, as every value written before fingerprints existed.
//
// Returns the time of the run (µs), then three values per event: 0, seq,
// "" for a new event; 1, seq, fingerprint for a duplicate; 2, 0, message
// for an event refused (an idempotency key holding something else): the
// others of the run are appended all the same, as a script's writes are
// never undone.
var publishScript = goredis.NewScript(publishSource)

const publishSource = `
redis.replicate_commands()
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('HERALDEPOCH the log was reset')
end
local function seqOf(id)
  return tonumber(string.match(id, '^(%d+)'))
end
local function timeOf(e)
  local f = e[2]
  for i = 1, #f, 2 do
    if f[i] == 't' then return tonumber(f[i + 1]) end
  end
  return nil
end
local max = tonumber(ARGV[2])
local maxAge = tonumber(ARGV[3])
local ageEvery = tonumber(ARGV[6])
local slack = math.floor(max / 8)
local t = redis.call('TIME')
local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ms = math.floor(us / 1000)
local sus = string.format('%d', us)
local minID = string.format('%d', ms - tonumber(ARGV[5]))
local n = (#KEYS - 6) / 2
-- First the idempotency keys: which events are new, and so how many
-- sequences the run takes. kind: 0 new, 1 duplicate (of seqs[i], or of
-- the run's event ref[i]), 2 refused.
local kind, seqs, ref, text = {}, {}, {}, {}
local holder = {} -- idempotency key -> the new event of the run holding it
local fresh = 0
for i = 0, n - 1 do
  kind[i] = 0
  if ARGV[9 + 4 * i] == '1' then
    local idemKey = KEYS[8 + 2 * i]
    local j = holder[idemKey]
    if j then
      kind[i], ref[i], text[i] = 1, j, ARGV[10 + 4 * j]
    else
      local orig = redis.call('GET', idemKey)
      if orig then
        local s, fp = string.match(orig, '^(%d+) ?(.*)$')
        if s then
          kind[i], seqs[i], text[i] = 1, tonumber(s), fp
        else
          kind[i], text[i] = 2, 'key ' .. idemKey .. ' holds no sequence'
        end
      else
        holder[idemKey] = i
      end
    end
  end
  if kind[i] == 0 then fresh = fresh + 1 end
end
local seq = 0
if fresh > 0 then
  seq = redis.call('INCRBY', KEYS[2], fresh) - fresh
end
-- The topics appended to, in order, with their names and how many events
-- each took: retention and the indexes are applied once per topic after
-- the run, which leaves them as applying them after each event would (no
-- command sees the state in between).
local replies = {us}
local topics, order = {}, {}
for i = 0, n - 1 do
  if kind[i] == 0 then
    seq = seq + 1
    seqs[i] = seq
    local topicKey, data = KEYS[7 + 2 * i], ARGV[8 + 4 * i]
    local s = string.format('%d', seq)
    redis.call('XADD', topicKey, s .. '-0', 't', sus, 'e', data)
    redis.call('XADD', KEYS[3], 'MINID', '~', minID, '*', 's', s, 't', sus, 'e', data)
    if ARGV[9 + 4 * i] == '1' then
      local v = s
      if ARGV[10 + 4 * i] ~= '' then v = v .. ' ' .. ARGV[10 + 4 * i] end
      redis.call('SET', KEYS[8 + 2 * i], v, 'PX', ARGV[4])
    end
    local tp = topics[topicKey]
    if tp then
      tp.events = tp.events + 1
    else
      tp = {name = ARGV[7 + 4 * i], events = 1, check = false}
      topics[topicKey] = tp
      order[#order + 1] = topicKey
    end
    if seq % ageEvery == 0 then tp.check = true end
    replies[#replies + 1] = 0
    replies[#replies + 1] = seq
    replies[#replies + 1] = ''
  else
    if ref[i] then seqs[i] = seqs[ref[i]] end
    replies[#replies + 1] = kind[i]
    replies[#replies + 1] = seqs[i] or 0
    replies[#replies + 1] = text[i]
  end
end
local named, touched = {}, {}
for _, topicKey in ipairs(order) do
  local tp = topics[topicKey]
  local len = redis.call('XLEN', topicKey)
  if len == tp.events then
    -- The stream held nothing before this run: a new name (or one the
    -- sweep forgot) for the index; a known one is there already.
    named[#named + 1] = 0
    named[#named + 1] = tp.name
  end
  touched[#touched + 1] = ms
  touched[#touched + 1] = tp.name
  local cut = 0
  -- Count: past the slack, the oldest events beyond the limit, read with
  -- the first one kept, which the age check below looks at.
  local first
  if len > max + slack then
    local old = redis.call('XRANGE', topicKey, '-', '+', 'COUNT', len - max + 1)
    cut = seqOf(old[len - max][1])
    first = old[len - max + 1]
    redis.call('XTRIM', topicKey, 'MINID', string.format('%d-0', cut + 1))
    len = max
  elseif tp.check then
    first = redis.call('XRANGE', topicKey, '-', '+', 'COUNT', 1)[1]
  end
  -- Age: the oldest events older than the limit, a bounded batch (what is
  -- left is skipped by Replay and removed by a later check).
  local cutoff = us - maxAge
  local aged = 0
  if first and (timeOf(first) or cutoff) < cutoff then
    for _, e in ipairs(redis.call('XRANGE', topicKey, '-', '+', 'COUNT', math.min(len, 32 * ageEvery))) do
      local ts = timeOf(e)
      if ts == nil or ts >= cutoff then break end
      aged = seqOf(e[1])
    end
  end
  if aged > 0 then
    redis.call('XTRIM', topicKey, 'MINID', string.format('%d-0', aged + 1))
    if aged > cut then cut = aged end
  end
  if cut > 0 then
    redis.call('ZADD', KEYS[6], 'GT', cut, tp.name)
  end
end
if #named > 0 then
  redis.call('ZADD', KEYS[4], unpack(named))
end
if #touched > 0 then
  redis.call('ZADD', KEYS[5], unpack(touched))
end
return replies
`

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

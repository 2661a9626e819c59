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
// (score: last publish ms), 6 cut (score: highest removed seq); then the
// streams of the run's T topics, in the order the run first names them;
// then the idempotency keys of its keyed events, in order.
// ARGV: 1 epoch, 2 max events, 3 max age (µs), 4 idempotency window (ms),
// 5 fan-in window (ms), 6 ageCheckEvery, 7 T; then the T topics' names;
// then two values per event: its topic's number (from 1), followed for a
// keyed event by "+" and its fingerprint; and its bytes. A topic is named
// once per run and an event without a key carries nothing for one, so a
// run of small events on few topics is about two values per event.
//
// An idempotency key holds "<seq> <fingerprint>", or "<seq>" when the event
// had no fingerprint, as every value written before fingerprints existed.
//
// Returns the time of the run (µs), then one value per event: its
// sequence for a new event; {seq, fingerprint} for a duplicate; {0,
// message} for an event refused (an idempotency key holding something
// else): the others of the run are appended all the same, as a script's
// writes are never undone.
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
local nt = tonumber(ARGV[7])
local base = 7 + nt
local n = (#ARGV - base) / 2
-- First the idempotency keys: which events are new, and so how many
-- sequences the run takes. kind: 0 new, 1 duplicate (of seqs[i], or of
-- the run's event ref[i]), 2 refused.
local topic, kind, seqs, ref, text, fps = {}, {}, {}, {}, {}, {}
local holder = {} -- idempotency key -> the new event of the run holding it
local keyed, fresh = 0, 0
for i = 0, n - 1 do
  kind[i] = 0
  local meta = ARGV[base + 1 + 2 * i]
  topic[i] = tonumber(meta)
  if not topic[i] then
    local t, fp = string.match(meta, '^(%d+)%+(.*)$')
    topic[i], fps[i] = tonumber(t), fp
    keyed = keyed + 1
    local idemKey = KEYS[6 + nt + keyed]
    local j = holder[idemKey]
    if j then
      kind[i], ref[i], text[i] = 1, j, fps[j]
    else
      local orig = redis.call('GET', idemKey)
      if orig then
        local s, ofp = string.match(orig, '^(%d+) ?(.*)$')
        if s then
          kind[i], seqs[i], text[i] = 1, tonumber(s), ofp
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
-- How many events each topic took, and whether it is due an age check:
-- retention and the indexes are applied once per topic after the run,
-- which leaves them as applying them after each event would (no command
-- sees the state in between).
local replies = {us}
local took, check = {}, {}
for t = 1, nt do took[t], check[t] = 0, false end
keyed = 0
for i = 0, n - 1 do
  local t = topic[i]
  if fps[i] then keyed = keyed + 1 end
  if kind[i] == 0 then
    seq = seq + 1
    seqs[i] = seq
    local topicKey, data = KEYS[6 + t], ARGV[base + 2 + 2 * i]
    local s = string.format('%d', seq)
    redis.call('XADD', topicKey, s .. '-0', 't', sus, 'e', data)
    redis.call('XADD', KEYS[3], 'MINID', '~', minID, '*', 's', s, 't', sus, 'e', data)
    if fps[i] then
      local v = s
      if fps[i] ~= '' then v = v .. ' ' .. fps[i] end
      redis.call('SET', KEYS[6 + nt + keyed], v, 'PX', ARGV[4])
    end
    took[t] = took[t] + 1
    if seq % ageEvery == 0 then check[t] = true end
    replies[#replies + 1] = seq
  elseif kind[i] == 1 then
    if ref[i] then seqs[i] = seqs[ref[i]] end
    replies[#replies + 1] = {seqs[i], text[i]}
  else
    replies[#replies + 1] = {0, text[i]}
  end
end
local named, touched = {}, {}
for t = 1, nt do
  if took[t] > 0 then -- not a topic of duplicates only
    local topicKey, name = KEYS[6 + t], ARGV[7 + t]
    local len = redis.call('XLEN', topicKey)
    if len == took[t] then
      -- The stream held nothing before this run: a new name (or one the
      -- sweep forgot) for the index; a known one is there already.
      named[#named + 1] = 0
      named[#named + 1] = name
    end
    touched[#touched + 1] = ms
    touched[#touched + 1] = name
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
    elseif check[t] then
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
      redis.call('ZADD', KEYS[6], 'GT', cut, name)
    end
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

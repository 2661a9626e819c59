package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/wire"
)

// maxCutLookups bounds how many removal marks above a position Replay
// examines; with more, it reports Truncated without looking further.
const maxCutLookups = 10_000

// Replay implements broker.Broker; see the package documentation.
func (b *Broker) Replay(ctx context.Context, patterns []broker.Pattern, after broker.EventID) (broker.ReplayResult, error) {
	return b.link.Replay(ctx, b.epoch, patterns, after, func(ctx context.Context, from uint64, res *broker.ReplayResult) error {
		topics, err := b.matchingTopics(ctx, patterns)
		if err != nil {
			return b.link.Fail(ctx, "replay", err)
		}
		events, truncated, err := b.read(ctx, patterns, topics, from)
		if err != nil {
			return err
		}
		res.Events = events
		res.Truncated = res.Truncated || truncated
		return nil
	})
}

// matchingTopics returns the names of the topics that may hold events
// matching patterns: literals as they are, wildcards looked up by their
// literal prefix.
func (b *Broker) matchingTopics(ctx context.Context, patterns []broker.Pattern) ([]string, error) {
	seen := make(map[string]bool)
	var topics []string
	add := func(t string) {
		if !seen[t] {
			seen[t] = true
			topics = append(topics, t)
		}
	}
	prefixes := make(map[string]bool)
	for _, p := range patterns {
		if p.Literal() {
			add(p.String())
			continue
		}
		prefixes[literalPrefix(p.String())] = true
	}
	if prefixes[""] {
		prefixes = map[string]bool{"": true} // one full scan covers every prefix
	}
	for prefix := range prefixes {
		min, max := "-", "+"
		if prefix != "" {
			min, max = "["+prefix, "["+prefix+"\xff"
		}
		names, err := b.rdb.ZRangeByLex(ctx, b.keys.topics, &goredis.ZRangeBy{Min: min, Max: max}).Result()
		if err != nil {
			return nil, err
		}
		for _, t := range names {
			if broker.MatchAny(patterns, t) {
				add(t)
			}
		}
	}
	slices.Sort(topics)
	return topics, nil
}

// literalPrefix returns the part of a pattern before its first wildcard
// token, with the dot: "orders.*.x" → "orders.", "*.eu" → "".
func literalPrefix(pattern string) string {
	end := 0
	for _, tok := range strings.Split(pattern, ".") {
		if tok == "*" || tok == ">" {
			break
		}
		end += len(tok) + 1
	}
	return pattern[:end]
}

// A topicsAt is what readAt read of several topics at one instant.
type topicsAt struct {
	now   time.Time
	floor uint64   // the removal marks' floor ({p}:cutfloor), 0 if none
	marks []string // topics marked as having lost events above the position, up to maxCutLookups+1
	// ranges holds each topic's entries with sequences from from to to.
	ranges [][]goredis.XMessage
}

// readAt reads, in one transaction, the entries of topics with sequences
// from from to to (0: the last), the topics whose removal mark is above
// pos, and the marks' floor, and checks the epoch. Redis's errors go
// through fail.
func (b *Broker) readAt(ctx context.Context, topics []string, pos, from, to uint64, fail func(error) error) (topicsAt, error) {
	var (
		now    *goredis.TimeCmd
		epoch  *goredis.StringCmd
		floor  *goredis.StringCmd
		cuts   *goredis.StringSliceCmd
		ranges = make([]*goredis.XMessageSliceCmd, len(topics))
		fromID = strconv.FormatUint(from, 10) + "-0"
		toID   = "+"
	)
	if to != 0 {
		toID = strconv.FormatUint(to, 10) + "-0"
	}
	_, err := b.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		now = p.Time(ctx)
		epoch = p.Get(ctx, b.keys.epoch)
		floor = p.Get(ctx, b.keys.cutFloor)
		cuts = p.ZRangeByScore(ctx, b.keys.cut, &goredis.ZRangeBy{Min: "(" + strconv.FormatUint(pos, 10), Max: "+inf", Count: maxCutLookups + 1})
		for i, t := range topics {
			ranges[i] = p.XRange(ctx, b.keys.topic(t), fromID, toID)
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return topicsAt{}, fail(err)
	}
	ep, err := epoch.Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return topicsAt{}, fail(err)
	}
	if err := b.checkEpoch(ep); err != nil {
		return topicsAt{}, err
	}
	at := topicsAt{now: now.Val(), marks: cuts.Val(), ranges: make([][]goredis.XMessage, len(topics))}
	at.floor, _ = floor.Uint64()
	for i, r := range ranges {
		at.ranges[i] = r.Val()
	}
	return at, nil
}

// events decodes at's entries into one list in Seq order, skipping those
// skip rejects and those malformed (reported to malformed with their
// topic).
func (at topicsAt) events(topics []string, skip func(*broker.Event) bool, malformed func(topic, id string, err error)) []*broker.Event {
	var events []*broker.Event
	sources := 0
	for i, r := range at.ranges {
		added := false
		for _, m := range r {
			ev, err := decodeEntry(m.ID, m.Values)
			if err != nil {
				malformed(topics[i], m.ID, err)
				continue
			}
			if skip != nil && skip(ev) {
				continue
			}
			events = append(events, ev)
			added = true
		}
		if added {
			sources++
		}
	}
	if sources > 1 {
		slices.SortFunc(events, func(x, y *broker.Event) int { return cmp.Compare(x.Seq, y.Seq) })
	}
	return events
}

// read reads, at one instant, the events after from on topics and whether
// any matching event after from was removed.
func (b *Broker) read(ctx context.Context, patterns []broker.Pattern, topics []string, from uint64) ([]*broker.Event, bool, error) {
	at, err := b.readAt(ctx, topics, from, from+1, 0, func(err error) error { return b.link.Fail(ctx, "replay", err) })
	if err != nil {
		return nil, false, err
	}
	truncated := from < at.floor || len(at.marks) > maxCutLookups
	for _, t := range at.marks {
		if broker.MatchAny(patterns, t) {
			truncated = true
			break
		}
	}
	for i, r := range at.ranges {
		// The publish script lets a topic run over MaxEvents by its
		// slack before trimming it: the oldest beyond MaxEvents are gone
		// already as far as Replay is concerned.
		if len(r) > b.opts.MaxEvents {
			at.ranges[i] = r[len(r)-b.opts.MaxEvents:]
			truncated = true
		}
	}
	cutoff := at.now.Add(-b.opts.MaxAge)
	events := at.events(topics, func(ev *broker.Event) bool {
		if ev.Time.Before(cutoff) {
			truncated = true // aged out, not trimmed yet
			return true
		}
		return false
	}, func(topic, id string, err error) {
		b.log.Warn("replay: skipping a malformed event", "topic", topic, "id", id, "err", err)
	})
	return events, truncated, nil
}

// decodeEntry decodes a topic stream entry: id "<seq>-0", fields t and e.
func decodeEntry(id string, values map[string]any) (*broker.Event, error) {
	seqText, _, _ := strings.Cut(id, "-")
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("entry id %q", id)
	}
	return decodeFields(seq, values)
}

func decodeFields(seq uint64, values map[string]any) (*broker.Event, error) {
	data, _ := values["e"].(string)
	t, _ := values["t"].(string)
	us, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("field t is %v", values["t"])
	}
	ev, err := wire.DecodeOwned([]byte(data))
	if err != nil {
		return nil, err
	}
	ev.Seq = seq
	ev.Time = time.UnixMicro(us)
	return ev, nil
}

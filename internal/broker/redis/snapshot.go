package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/internal/broker"
)

// snapshotPage is how many topics one round trip of a snapshot reads.
const snapshotPage = 512

var _ broker.Snapshotter = (*Broker)(nil)

// Snapshot implements broker.Snapshotter; see the package documentation.
// It reads the last sequence given out first: every topic with an event up
// to it was in the topic index by then (the publish script adds both at
// once), so listing the index afterwards misses none, and reading each
// topic's stream only up to that sequence makes the snapshot one position
// however many publishes run meanwhile. Topics are read a page at a time,
// and reading stops once more than limit topics had an event.
func (b *Broker) Snapshot(ctx context.Context, patterns []broker.Pattern, limit int) (broker.SnapshotResult, error) {
	var res broker.SnapshotResult
	if limit < 1 {
		return res, fmt.Errorf("%w: snapshot limit is %d; it must be at least 1", broker.ErrBadRequest, limit)
	}
	ctx, cancel, err := b.link.Begin(ctx)
	defer cancel()
	if err != nil {
		return res, err
	}
	pos, err := positionScript.Run(ctx, b.rdb, []string{b.keys.epoch, b.keys.seq, b.keys.all}, b.epoch).Slice()
	if err != nil {
		return res, b.link.Fail(ctx, "snapshot", err)
	}
	upto, ok := int64(0), len(pos) == 2
	if ok {
		upto, ok = pos[0].(int64)
	}
	if !ok || upto < 0 {
		return res, fmt.Errorf("%w: redis: position script answered %v", broker.ErrUnavailable, pos)
	}
	res.Upto = uint64(upto)
	if len(patterns) == 0 {
		return res, nil
	}
	end := strconv.FormatInt(upto, 10) + "-0"
	err = b.eachTopicPage(ctx, patterns, func(topics []string) (bool, error) {
		evs, err := b.lastEvents(ctx, topics, end)
		if err != nil {
			return false, err
		}
		res.Events = append(res.Events, evs...)
		return len(res.Events) > limit, nil
	})
	if err != nil {
		return broker.SnapshotResult{}, err
	}
	if len(res.Events) > limit {
		res.Events, res.More = res.Events[:limit], true
	}
	slices.SortFunc(res.Events, func(x, y *broker.Event) int { return cmp.Compare(x.Seq, y.Seq) })
	b.link.Confirm()
	return res, nil
}

// lastEvents reads, in one round trip, the last entry up to id end of each
// topic's stream, leaving out topics with none and those whose last such
// event aged out (older than MaxAge by the server's clock, not trimmed
// yet: the topic's earlier events are older still).
func (b *Broker) lastEvents(ctx context.Context, topics []string, end string) ([]*broker.Event, error) {
	var (
		now    *goredis.TimeCmd
		epoch  *goredis.StringCmd
		ranges = make([]*goredis.XMessageSliceCmd, len(topics))
	)
	_, err := b.rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		epoch = p.Get(ctx, b.keys.epoch)
		now = p.Time(ctx)
		for i, t := range topics {
			ranges[i] = p.XRevRangeN(ctx, b.keys.topic(t), end, "-", 1)
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, b.link.Fail(ctx, "snapshot", err)
	}
	ep, err := epoch.Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, b.link.Fail(ctx, "snapshot", err)
	}
	if err := b.checkEpoch(ep); err != nil {
		return nil, err
	}
	cutoff := now.Val().Add(-b.opts.MaxAge)
	var events []*broker.Event
	for i, r := range ranges {
		for _, m := range r.Val() {
			ev, err := decodeEntry(m.ID, m.Values)
			if err != nil {
				b.log.Warn("snapshot: skipping a malformed event", "topic", topics[i], "id", m.ID, "err", err)
				continue
			}
			if ev.Time.Before(cutoff) {
				continue
			}
			events = append(events, ev)
		}
	}
	return events, nil
}

// eachTopicPage calls page with the names of the topics that may match
// patterns, up to snapshotPage at a time, each name once, until it returns
// true or an error. Literal patterns are names as they are; wildcard
// patterns are looked up in the topic index by their literal prefix, one
// range per prefix that no other one contains, so that no name comes
// twice.
func (b *Broker) eachTopicPage(ctx context.Context, patterns []broker.Pattern, page func([]string) (bool, error)) error {
	var prefixes, literals []string
	for _, p := range patterns {
		if !p.Literal() {
			prefixes = append(prefixes, literalPrefix(p.String()))
		}
	}
	slices.Sort(prefixes)
	prefixes = slices.Compact(prefixes)
	prefixes = slices.DeleteFunc(prefixes, func(p string) bool { return underAny(prefixes, p, true) })
	for _, p := range patterns {
		if t := p.String(); p.Literal() && !underAny(prefixes, t, false) && !slices.Contains(literals, t) {
			literals = append(literals, t)
		}
	}
	for chunk := range slices.Chunk(literals, snapshotPage) {
		if stop, err := page(chunk); stop || err != nil {
			return err
		}
	}
	for _, prefix := range prefixes {
		min, max := "-", "+"
		if prefix != "" {
			min, max = "["+prefix, "["+prefix+"\xff"
		}
		for {
			names, err := b.rdb.ZRangeByLex(ctx, b.keys.topics, &goredis.ZRangeBy{Min: min, Max: max, Count: snapshotPage}).Result()
			if err != nil {
				return b.link.Fail(ctx, "snapshot", err)
			}
			matching := slices.DeleteFunc(slices.Clone(names), func(t string) bool { return !broker.MatchAny(patterns, t) })
			if len(matching) > 0 {
				if stop, err := page(matching); stop || err != nil {
					return err
				}
			}
			if len(names) < snapshotPage {
				break
			}
			min = "(" + names[len(names)-1]
		}
	}
	return nil
}

// underAny reports whether s starts with one of prefixes (other than s
// itself, when proper is set).
func underAny(prefixes []string, s string, proper bool) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) && (!proper || p != s) {
			return true
		}
	}
	return false
}

package jetstream

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/broker"
)

// replayBatch is how many messages one fetch of a replay asks for.
const replayBatch = 256

// Replay implements broker.Broker. It reads the matching events with one
// short-lived consumer per group of non-overlapping patterns (JetStream
// refuses overlapping filters on one consumer), in stream order from
// after+1 to the stream's end, and merges the groups by sequence. See the
// package documentation for how Truncated is decided.
func (b *Broker) Replay(ctx context.Context, patterns []broker.Pattern, after broker.EventID) (broker.ReplayResult, error) {
	return b.link.Replay(ctx, b.epoch, patterns, after, func(ctx context.Context, from uint64, res *broker.ReplayResult) error {
		var events []*broker.Event
		firstPrev := make(map[string]uint64) // topic → Herald-Prev of its first replayed event
		groups := filterGroups(patterns)
		for _, g := range groups {
			subjects := make([]string, len(g))
			for i, p := range g {
				subjects[i] = b.subjPrefix + p.String()
			}
			evs, err := b.fetch(ctx, subjects, from+1, firstPrev)
			if err != nil {
				return err
			}
			events = append(events, evs...)
		}
		if len(groups) > 1 {
			slices.SortFunc(events, func(x, y *broker.Event) int { return cmp.Compare(x.Seq, y.Seq) })
			events = slices.CompactFunc(events, func(x, y *broker.Event) bool { return x.Seq == y.Seq })
		}
		for _, prev := range firstPrev {
			if prev > from {
				res.Truncated = true // the event before the first returned one, after the position, is gone
			}
		}
		if !res.Truncated {
			// Topics with nothing returned: read the stream's first sequence
			// after the fetch, so that whatever was removed meanwhile lies
			// below it.
			info, err := b.stream.Info(ctx)
			if err != nil {
				return b.link.Fail(ctx, "replay", err)
			}
			if err := b.checkCreated(info.Created); err != nil {
				return err
			}
			if from+1 < info.State.FirstSeq && !everyLiteralReturned(patterns, firstPrev) {
				res.Truncated = true
			}
		}
		res.Events = events
		return nil
	})
}

// everyLiteralReturned reports whether every pattern is a literal topic of
// which some event was returned, so that no topic without returned events
// can match.
func everyLiteralReturned(patterns []broker.Pattern, returned map[string]uint64) bool {
	for _, p := range patterns {
		if !p.Literal() {
			return false
		}
		if _, ok := returned[p.String()]; !ok {
			return false
		}
	}
	return true
}

// fetch reads the events on subjects from sequence start to the end of the
// stream with a temporary consumer, noting each topic's first Herald-Prev.
func (b *Broker) fetch(ctx context.Context, subjects []string, start uint64, firstPrev map[string]uint64) ([]*broker.Event, error) {
	cfg := natsjs.ConsumerConfig{
		DeliverPolicy:     natsjs.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		AckPolicy:         natsjs.AckNonePolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	}
	if len(subjects) == 1 {
		cfg.FilterSubject = subjects[0]
	} else {
		cfg.FilterSubjects = subjects
	}
	cons, err := b.stream.CreateConsumer(ctx, cfg)
	if err != nil {
		return nil, b.link.Fail(ctx, "replay", err)
	}
	name := cons.CachedInfo().Name
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.opts.Timeout)
		_ = b.stream.DeleteConsumer(dctx, name)
		cancel()
	}()
	pending := cons.CachedInfo().NumPending
	var events []*broker.Event
	for uint64(len(events)) < pending {
		batch, err := cons.FetchNoWait(int(min(pending-uint64(len(events)), replayBatch)))
		if err != nil {
			return nil, b.link.Fail(ctx, "replay", err)
		}
		got, more := 0, true
		for msg := range batch.Messages() {
			got++
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			ev, prev, err := b.decode(msg.Subject(), msg.Headers().Get(prevHeader), msg.Data())
			if err != nil {
				b.log.Warn("replay: skipping a malformed event", "seq", meta.Sequence.Stream, "subject", msg.Subject(), "err", err)
				continue
			}
			ev.Seq = meta.Sequence.Stream
			if msg.Headers().Get(runHeader) != "" {
				prev = ev.Seq - 1 // inside an atomic batch of its topic (pipeline.go)
			}
			if _, seen := firstPrev[ev.Topic]; !seen {
				firstPrev[ev.Topic] = prev
			}
			events = append(events, ev)
			if meta.NumPending == 0 {
				more = false
			}
		}
		if err := batch.Error(); err != nil {
			return nil, b.link.Fail(ctx, "replay", err)
		}
		if got == 0 || !more {
			break // the rest was removed meanwhile, or nothing is left
		}
	}
	return events, nil
}

// filterGroups returns the patterns without those another one covers, in
// groups whose members do not overlap, as consumer filters must not.
func filterGroups(patterns []broker.Pattern) [][]broker.Pattern {
	var kept []broker.Pattern
	for i, p := range patterns {
		covered := false
		for j, q := range patterns {
			if i != j && q.Covers(p) && (!p.Covers(q) || j < i) {
				covered = true // by a wider pattern, or by an equal earlier one
				break
			}
		}
		if !covered {
			kept = append(kept, p)
		}
	}
	var groups [][]broker.Pattern
next:
	for _, p := range kept {
		for i, g := range groups {
			if !slices.ContainsFunc(g, func(q broker.Pattern) bool { return overlap(p, q) }) {
				groups[i] = append(g, p)
				continue next
			}
		}
		groups = append(groups, []broker.Pattern{p})
	}
	return groups
}

// overlap reports whether some topic matches both patterns.
func overlap(p, q broker.Pattern) bool {
	pt, qt := strings.Split(p.String(), "."), strings.Split(q.String(), ".")
	for i := 0; ; i++ {
		switch {
		case i == len(pt) || i == len(qt):
			return len(pt) == len(qt)
		case pt[i] == ">" || qt[i] == ">":
			return true
		case pt[i] == "*" || qt[i] == "*" || pt[i] == qt[i]:
		default:
			return false
		}
	}
}

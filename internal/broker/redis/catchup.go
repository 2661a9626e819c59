package redis

import (
	"context"
	"slices"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/remote"
)

// A gap is what the topic streams still hold of the events a subscription
// missed in the fan-in stream, and which topics lost the others.
type gap struct {
	// events are the retained events in the gap, in Seq order.
	events []*broker.Event
	// lost names the topics that may have lost events in the gap; every
	// reports that Redis cannot tell which did.
	lost  []string
	every bool
}

// catchUp delivers the events with sequences in (last, next), which the
// fan-in stream no longer held when the subscription read it, from the
// topic streams; markers (broker.LostType) for the topics that lost some
// come first, before any event after last. It reports false when the
// subscription must end.
func (b *Broker) catchUp(ctx context.Context, s *remote.Subscription, last, next uint64, deliver func(*broker.Event)) bool {
	for {
		// Every topic is read at once: allow for more than one call's worth.
		rctx, cancel := context.WithTimeout(ctx, 10*b.opts.Timeout)
		g, err := b.readGap(rctx, last, next)
		cancel()
		if err == nil {
			return b.deliverGap(s, g, last, next, deliver)
		}
		if s.Stopped() || b.link.Usable() != nil {
			return false
		}
		b.link.Kick()
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}

// deliverGap delivers g: the markers, each naming the first event after
// them, and then its events.
func (b *Broker) deliverGap(s *remote.Subscription, g gap, last, next uint64, deliver func(*broker.Event)) bool {
	if g.every || len(g.lost) > 0 {
		after := next
		if len(g.events) > 0 {
			after = g.events[0].Seq
		}
		missed := next - last - 1 - uint64(len(g.events))
		if g.every {
			b.log.Warn("this node fell behind Redis's retention and lost events; Redis no longer tells of which topics, so every topic is marked", "missed", missed, "after", last, "before", next)
			g.lost = []string{""}
		} else {
			b.log.Warn("this node fell behind Redis's retention and lost events; their topics are marked", "missed", missed, "after", last, "before", next, "topics", len(g.lost))
		}
		for _, topic := range g.lost {
			if s.Stopped() {
				return false
			}
			deliver(&broker.Event{Topic: topic, Type: broker.LostType, Seq: after})
		}
	}
	for _, ev := range g.events {
		if s.Stopped() {
			return false
		}
		deliver(ev)
	}
	return true
}

// readGap reads, at one instant, the events with sequences in (last, next)
// from every topic stream, and when some are gone, which topics may have
// lost them: those whose removal mark is above last. Retention removes a
// topic's oldest events first and marks each removal in the same step, so
// a topic whose mark is above last lost every event it had in the gap, or
// had none there (its mark is then at next or beyond, and the marker is one
// of caution). When the marks above last were folded into the floor, or
// there are more than maxCutLookups of them, or none while events are gone,
// Redis cannot tell: every topic. Events older than MaxAge that no publish
// has trimmed yet are delivered, not counted as gone: they are still there,
// though Replay skips them.
func (b *Broker) readGap(ctx context.Context, last, next uint64) (gap, error) {
	all, _ := broker.ParsePattern(">")
	topics, err := b.matchingTopics(ctx, []broker.Pattern{all})
	if err != nil {
		return gap{}, err
	}
	at, err := b.readAt(ctx, topics, last, last+1, next-1, func(err error) error { return err })
	if err != nil {
		return gap{}, err
	}
	var g gap
	var malformed []string
	g.events = at.events(topics, nil, func(topic, id string, err error) {
		b.log.Warn("catching up: skipping a malformed event", "topic", topic, "id", id, "err", err)
		malformed = append(malformed, topic)
	})
	if uint64(len(g.events)) == next-last-1 {
		return g, nil // nothing is gone
	}
	marks := at.marks
	switch {
	case at.floor > last, len(marks) > maxCutLookups, len(marks)+len(malformed) == 0:
		g.every = true
	default:
		g.lost = append(marks, malformed...)
		slices.Sort(g.lost)
		g.lost = slices.Compact(g.lost)
	}
	return g, nil
}

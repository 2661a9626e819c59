package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/sse"
)

// Snapshots: a subscription with snapshot=true starts with, for every
// topic it matches, the latest retained event, then live events. The hub
// subscription comes first, so no event accepted meanwhile is missed; the
// broker's snapshot reflects one position, Upto; the stream then skips live
// events up to Upto, so that no event arrives twice and ids only increase.
// A herald.synced event, whose id is Upto, ends the snapshot: a reconnect
// resumes from there, after exactly the events the snapshot reflected.

// SyncedEventType ends a snapshot. Its data is a JSON object:
//
//	{"topics": <how many topics the snapshot held>, "lastEventId": "<id>"}
const SyncedEventType = "herald.synced"

// DefaultMaxSnapshotTopics bounds the topics of one snapshot.
const DefaultMaxSnapshotTopics = 10_000

// errSnapshotTooLarge wraps the refusal of a snapshot over the limit.
var errSnapshotTooLarge = errors.New("snapshot too large")

// A start is what a subscription gets before live events: a gap, history
// or a snapshot, read before the response head is written so that a
// snapshot over the limit can still be refused with 400.
type start struct {
	gap     string // why events may have been missed; "" for none
	events  []*broker.Event
	synced  bool // the events are a snapshot: end them with Synced
	topics  int  // topics in the snapshot
	upto    uint64
	lastSeq uint64 // live events up to it are skipped
}

// begin reads what a subscription starts with: for a resume, the history
// after its id (or, when that has a gap and the subscription asked for a
// snapshot, the gap and a fresh snapshot); otherwise a snapshot if asked.
// Call it after subscribing s to the hub.
func (h *Hub) begin(ctx context.Context, patterns []broker.Pattern, lastEventID string, resume, snapshot bool, s *subscriber, maxTopics int) (start, error) {
	var st start
	if resume {
		res, err := h.resume(ctx, patterns, lastEventID)
		if err != nil {
			return st, err
		}
		st.gap = res.gap
		if res.gap == "" || !snapshot {
			for _, ev := range res.events {
				if h.wants(s, ev) {
					st.events = append(st.events, ev)
				}
			}
			st.lastSeq = res.lastSeq
			return st, nil
		}
	} else if !snapshot {
		return st, nil
	}
	snap, ok := h.broker.(broker.Snapshotter)
	if !ok {
		return st, fmt.Errorf("%w: snapshot: this server's broker cannot take snapshots", broker.ErrBadRequest)
	}
	res, err := snap.Snapshot(ctx, patterns, maxTopics)
	if err != nil {
		return st, fmt.Errorf("%w: taking the snapshot failed; retry: %v", broker.ErrUnavailable, err)
	}
	if res.More {
		return st, fmt.Errorf("%w: %w: the subscription matches more than %d topics (--max-snapshot-topics); subscribe to fewer, or without snapshot", broker.ErrBadRequest, errSnapshotTooLarge, maxTopics)
	}
	for _, ev := range res.Events {
		// A deleted topic leaves the snapshot; a filter may drop more.
		if !isDeletion(ev) && h.wants(s, ev) {
			st.events = append(st.events, ev)
		}
	}
	st.synced, st.topics, st.upto, st.lastSeq = true, len(st.events), res.Upto, res.Upto
	h.metrics.snapshots.Inc()
	return st, nil
}

// syncedFrame is the herald.synced event of a snapshot.
func (h *Hub) syncedFrame(b []byte, st start, render *Rendering) []byte {
	id := broker.EventID{Epoch: h.epoch, Seq: st.upto}.String()
	data, _ := json.Marshal(struct {
		Topics      int    `json:"topics"`
		LastEventID string `json:"lastEventId"`
	}{st.topics, id})
	if render != nil && render.Envelope {
		return sse.AppendEvent(b, id, "", envelope(SyncedEventType, data))
	}
	return sse.AppendEvent(b, id, SyncedEventType, data)
}

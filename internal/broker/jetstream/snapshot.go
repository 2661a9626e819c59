package jetstream

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/broker"
)

const (
	// maxMultiLast is the most subjects one batched direct get may match:
	// the server answers more with 413 Too Many Results.
	maxMultiLast = 1024
	// literalChunk is how many listed subjects one batched direct get
	// names, when a snapshot's patterns match more than maxMultiLast: at
	// most MaxTopicLen bytes each, a request of well under 1 MiB.
	literalChunk = 512
	// snapshotMaxBytes bounds the answer to one batched direct get; the
	// rest comes in further requests.
	snapshotMaxBytes = 8 << 20
	// numPendingHeader, on the end-of-batch mark of a batched direct get,
	// counts the messages the batch left out.
	numPendingHeader = "Nats-Num-Pending"
	// upToHeader, on the same mark, is the sequence the answer is as of.
	upToHeader = "Nats-UpTo-Sequence"
)

var _ broker.Snapshotter = (*Broker)(nil)

// errTooManySubjects is the server's refusal of a batched direct get that
// matches more than maxMultiLast subjects.
var errTooManySubjects = errors.New("more subjects than one batched direct get may match")

// Snapshot implements broker.Snapshotter; see the package documentation.
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
	info, err := b.stream.Info(ctx)
	if err != nil {
		return res, b.link.Fail(ctx, "snapshot", err)
	}
	if err := b.checkCreated(info.Created); err != nil {
		return res, err
	}
	// Every event accepted before the call has a sequence up to floor.
	floor := info.State.LastSeq
	res.Upto = floor
	if len(patterns) == 0 || info.State.Msgs == 0 {
		return res, nil
	}
	var filters []string
	for _, g := range filterGroups(patterns) {
		for _, p := range g {
			filters = append(filters, b.subjPrefix+p.String())
		}
	}
	events, upto, err := b.lastPerSubject(ctx, filters, 0, floor, limit+1)
	if errors.Is(err, errTooManySubjects) {
		// The subjects are listed after floor was read, so every one with
		// a message up to floor is among them.
		upto = floor
		events, err = b.lastPerListedSubject(ctx, filters, floor, limit+1)
	}
	if err != nil {
		return broker.SnapshotResult{}, err
	}
	if len(events) > limit {
		events, res.More = events[:limit], true
	}
	slices.SortFunc(events, func(x, y *broker.Event) int { return cmp.Compare(x.Seq, y.Seq) })
	res.Events, res.Upto = events, upto
	b.link.Confirm()
	return res, nil
}

// lastPerListedSubject is lastPerSubject for filters that match more than
// maxMultiLast subjects: it lists the subjects the stream holds under
// filters, and asks for them literalChunk at a time, every request up to
// the same sequence.
func (b *Broker) lastPerListedSubject(ctx context.Context, filters []string, upto uint64, most int) ([]*broker.Event, error) {
	set := make(map[string]struct{})
	for _, f := range filters {
		info, err := b.stream.Info(ctx, natsjs.WithSubjectFilter(f))
		if err != nil {
			return nil, b.link.Fail(ctx, "snapshot: listing topics", err)
		}
		for subj := range info.State.Subjects {
			set[subj] = struct{}{}
		}
	}
	subjects := make([]string, 0, len(set))
	for subj := range set {
		subjects = append(subjects, subj)
	}
	slices.Sort(subjects)
	var events []*broker.Event
	for chunk := range slices.Chunk(subjects, literalChunk) {
		evs, _, err := b.lastPerSubject(ctx, chunk, upto, upto, most-len(events))
		if err != nil {
			return nil, err
		}
		if events = append(events, evs...); len(events) >= most {
			break
		}
	}
	return events, nil
}

// directGet is the request of a batched direct get.
type directGet struct {
	MultiLast []string `json:"multi_last"`
	UpToSeq   uint64   `json:"up_to_seq,omitempty"`
	Seq       uint64   `json:"seq,omitempty"`
	Batch     int      `json:"batch"`
	MaxBytes  int      `json:"max_bytes"`
}

// lastPerSubject returns, for at most most of the subjects that filters
// match, the last message with sequence <= upto, and upto, read with
// batched direct gets ($JS.API.DIRECT.GET with multi_last and up_to_seq):
// the server picks each subject's message as of upto in one pass over its
// index, so the answer is of that one position whatever was appended
// meanwhile. Long answers come in pages, each from after the last sequence
// of the one before.
//
// With upto 0 the server that answers takes its own last sequence, and
// names it; that is upto then. A replica that names one below floor has
// not caught up with events already accepted: the request goes again,
// until one that has answers or ctx ends.
func (b *Broker) lastPerSubject(ctx context.Context, filters []string, upto, floor uint64, most int) ([]*broker.Event, uint64, error) {
	req := directGet{MultiLast: filters, UpToSeq: upto, Batch: most, MaxBytes: snapshotMaxBytes}
	var events []*broker.Event
	for attempt := 1; ; {
		page, err := b.directGetPage(ctx, &req)
		if err != nil {
			return nil, 0, err
		}
		if page.none {
			return events, max(req.UpToSeq, floor), nil
		}
		if req.UpToSeq == 0 {
			switch {
			case page.pos == 0:
				// An older server, which names no position: ask again
				// as of floor.
				req.UpToSeq = floor
				continue
			case page.pos < floor:
				if err := b.backOff(ctx, attempt); err != nil {
					return nil, 0, err
				}
				attempt++
				continue
			}
			req.UpToSeq = page.pos
		}
		events = append(events, page.events...)
		if page.pending == 0 || len(page.events) == 0 || len(events) >= most {
			return events, req.UpToSeq, nil
		}
		req.Seq = page.events[len(page.events)-1].Seq + 1
		req.Batch = most - len(events)
	}
}

// backOff waits a little longer for each attempt, until ctx ends.
func (b *Broker) backOff(ctx context.Context, attempt int) error {
	select {
	case <-ctx.Done():
		return b.link.Fail(ctx, "snapshot: waiting for a replica to catch up", ctx.Err())
	case <-time.After(time.Duration(min(attempt, 20)) * 5 * time.Millisecond):
		return nil
	}
}

// A directPage is one answer to a batched direct get.
type directPage struct {
	events  []*broker.Event
	pending uint64 // matching messages the batch left out
	pos     uint64 // the sequence the answer is as of, if the server named it
	none    bool   // the server found no matching message
}

// directGetPage sends one batched direct get and reads its answer up to
// the end-of-batch mark. The answer is gathered by a callback into a slice,
// not read from a synchronous subscription, whose channel nats.go
// allocates at its full default length (64Ki messages) for every request.
func (b *Broker) directGetPage(ctx context.Context, req *directGet) (directPage, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return directPage{}, err
	}
	var (
		mu    sync.Mutex
		msgs  []*nats.Msg // guarded by mu
		ended bool        // guarded by mu
		done  = make(chan struct{})
	)
	sub, err := b.nc.Subscribe(b.nc.NewInbox(), func(msg *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if ended {
			return
		}
		msgs = append(msgs, msg)
		if msg.Header.Get("Status") != "" {
			ended = true
			close(done) // the end of the answer: the mark or an error
		}
	})
	if err != nil {
		return directPage{}, b.link.Fail(ctx, "snapshot", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.nc.PublishRequest(natsjs.DefaultAPIPrefix+"DIRECT.GET."+b.streamName, sub.Subject, data); err != nil {
		return directPage{}, b.link.Fail(ctx, "snapshot", err)
	}
	select {
	case <-ctx.Done():
		return directPage{}, b.link.Fail(ctx, "snapshot", ctx.Err())
	case <-done:
	}
	mu.Lock()
	defer mu.Unlock()
	var page directPage
	for _, msg := range msgs {
		switch status, descr := msg.Header.Get("Status"), msg.Header.Get("Description"); {
		case status == "":
		case status == "204": // EOB
			page.pending, _ = strconv.ParseUint(msg.Header.Get(numPendingHeader), 10, 64)
			page.pos, _ = strconv.ParseUint(msg.Header.Get(upToHeader), 10, 64)
			return page, nil
		case status == "404" && descr == "No Results":
			return directPage{none: true}, nil
		case status == "413":
			return directPage{}, errTooManySubjects
		default:
			return directPage{}, b.link.Fail(ctx, "snapshot", fmt.Errorf("batched direct get answered %s %s", status, descr))
		}
		ev, err := b.decodeDirect(msg)
		if err != nil {
			b.log.Warn("snapshot: skipping a malformed event", "seq", msg.Header.Get(natsjs.SequenceHeader), "subject", msg.Header.Get(natsjs.SubjectHeader), "err", err)
			continue
		}
		page.events = append(page.events, ev)
	}
	return directPage{}, b.link.Fail(ctx, "snapshot", errors.New("batched direct get: the answer ended without a status"))
}

// decodeDirect turns a message of a direct get into an event.
func (b *Broker) decodeDirect(msg *nats.Msg) (*broker.Event, error) {
	seq, err := strconv.ParseUint(msg.Header.Get(natsjs.SequenceHeader), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("header %s is %q", natsjs.SequenceHeader, msg.Header.Get(natsjs.SequenceHeader))
	}
	ev, _, err := b.decode(msg.Header.Get(natsjs.SubjectHeader), msg.Header.Get(prevHeader), msg.Data)
	if err != nil {
		return nil, err
	}
	ev.Seq = seq
	return ev, nil
}

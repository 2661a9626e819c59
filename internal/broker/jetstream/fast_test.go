package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/jetstream/jstest"
	"github.com/heraldhq/herald/internal/broker/wire"
	"github.com/heraldhq/herald/internal/poll"
)

// startFastNode starts a node on a fresh stream of replicas at url that takes fast
// batches, and appends one event to topic, so that its last sequence is
// the stream's last and the node's.
func startFastNode(t *testing.T, url, prefix, topic string, replicas int) *Broker {
	t.Helper()
	b, err := New(t.Context(), Options{URL: url, Prefix: prefix, Replicas: replicas, Timeout: 5 * time.Second, MaxEvents: 10000, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if !b.fast.on.Load() {
		t.Fatal("the stream does not take fast batches; the server is 2.14 or newer")
	}
	if _, err := b.Publish(t.Context(), &broker.Event{Topic: topic, Type: "t", Payload: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	return b
}

// answers collects what a run's events are answered with.
type answers struct {
	mu    sync.Mutex
	wg    sync.WaitGroup
	seqs  []uint64
	errs  []error
	count atomic.Int64 // answered so far
}

func (a *answers) pending(b *Broker, topic string, n int) []*pendingAppend {
	a.seqs, a.errs = make([]uint64, n), make([]error, n)
	run := make([]*pendingAppend, n)
	for i := range run {
		a.wg.Add(1)
		ev := &broker.Event{Topic: topic, Type: "t", Payload: []byte(fmt.Sprint(i))}
		run[i] = b.newPending(context.Background(), ev, func(res broker.PublishResult, err error) {
			a.mu.Lock()
			a.seqs[i], a.errs[i] = res.Seq, err
			a.mu.Unlock()
			a.wg.Done()
		})
	}
	return run
}

// appendFastRun appends run to topic ts as its holder does, once the node
// would send it as a fast batch, and waits for every event's answer.
func appendFastRun(t *testing.T, b *Broker, a *answers, ts *topicState, run []*pendingAppend) {
	t.Helper()
	if !b.takeFast(ts, run) {
		t.Fatal("the node does not try a fast batch though its last append is its topic's")
	}
	b.fast.busy.Store(false)
	b.appendRun(ts, run)
	a.wg.Wait()
}

// stored checks that event i of a run was answered with the sequence the
// stream stored it at.
func (a *answers) stored(t *testing.T, b *Broker, i int) {
	t.Helper()
	if a.errs[i] != nil {
		t.Fatalf("event %d: %v", i, a.errs[i])
	}
	msg, err := b.stream.GetMsg(t.Context(), a.seqs[i])
	if err != nil {
		t.Fatalf("event %d, answered with Seq %d: %v", i, a.seqs[i], err)
	}
	ev, err := wire.Decode(msg.Data)
	if err != nil || string(ev.Payload) != fmt.Sprint(i) {
		t.Fatalf("event %d was answered with Seq %d, which holds %q (%v)", i, a.seqs[i], ev.Payload, err)
	}
}

// TestFastRunsOfOneNode: a node alone on the stream appends a busy topic's
// runs as fast batches. Every event is answered with the sequence it is
// stored at, in the order handed over, and each message names its
// predecessor on the topic. Without fast batches nothing is stored by
// them; with the ids of a fast batch worked out wrong, an event's answer
// names another event's message.
func TestFastRunsOfOneNode(t *testing.T) {
	srv := jstest.Start(t)
	b := startFastNode(t, srv.URL(), "fast", "hot", 1)
	const n = 2000
	var a answers
	a.seqs, a.errs = make([]uint64, n), make([]error, n)
	for i := range n {
		a.wg.Add(1)
		b.PublishAsync(t.Context(), &broker.Event{Topic: "hot", Type: "t", Payload: []byte(fmt.Sprint(i))}, func(res broker.PublishResult, err error) {
			a.mu.Lock()
			a.seqs[i], a.errs[i] = res.Seq, err
			a.mu.Unlock()
			a.wg.Done()
		})
	}
	a.wg.Wait()
	for i := range n {
		a.stored(t, b, i)
		if i > 0 && a.seqs[i] <= a.seqs[i-1] {
			t.Fatalf("event %d got Seq %d after Seq %d", i, a.seqs[i], a.seqs[i-1])
		}
	}
	checkChain(t, b, "hot")
	if got := b.fast.stored.Load(); got == 0 {
		t.Fatal("no event was stored by a fast batch")
	} else {
		t.Logf("%d of %d events stored by fast batches", got, n)
	}
}

// TestFastRunFindsAnotherWriter: another writer appended to the stream
// after the node's last append, so the fast batch's first message finds
// the stream's last sequence moved and nothing of it is stored. The run
// goes as an atomic batch instead, each event stored once, in order, and
// answered with its own sequence, and the node sends no fast batch for a
// while. Trusting the fast batch without its answer would answer events
// with sequences of messages that are not theirs.
func TestFastRunFindsAnotherWriter(t *testing.T) {
	srv := jstest.Start(t)
	b := startFastNode(t, srv.URL(), "other", "hot", 1)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), b.subjPrefix+"cold", []byte("foreign")); err != nil {
		t.Fatal(err)
	}

	ts := b.topics["hot"]
	var a answers
	run := a.pending(b, "hot", 10)
	appendFastRun(t, b, &a, ts, run)
	for i := range run {
		a.stored(t, b, i)
		if want := uint64(3 + i); a.seqs[i] != want {
			t.Errorf("event %d: Seq %d, want %d", i, a.seqs[i], want)
		}
	}
	checkChain(t, b, "hot")
	if got := b.fast.stored.Load(); got != 0 {
		t.Errorf("%d events stored by a fast batch that should have found the stream moved", got)
	}
	if b.takeFast(ts, a.pending(b, "hot", 10)) {
		t.Error("the node tries a fast batch again at once after one found another writer")
	}
	info, err := b.stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 12 {
		t.Errorf("the stream holds %d messages, want 12: the first event, the foreign one and the run once", info.State.Msgs)
	}
}

// TestFastRunStoresAPrefix: the stream refuses the sixth event of a fast
// batch. It stores the five before it and nothing after it, and the node
// answers those five with their sequences and the others with errors
// (they go on as an atomic batch, which the sixth fails whole). Counting
// the stored prefix wrong answers events with sequences they do not have,
// or leaves events stored but unanswered.
func TestFastRunStoresAPrefix(t *testing.T) {
	srv := jstest.Start(t)
	b := startFastNode(t, srv.URL(), "prefix", "hot", 1)
	ts := b.topics["hot"]
	var a answers
	run := a.pending(b, "hot", 10)
	run[5].msg.Header.Set(natsjs.ExpectedStreamHeader, "NOT_THIS_ONE")
	appendFastRun(t, b, &a, ts, run)
	for i := range 5 {
		a.stored(t, b, i)
		if want := uint64(2 + i); a.seqs[i] != want {
			t.Errorf("event %d: Seq %d, want %d", i, a.seqs[i], want)
		}
	}
	for i := 5; i < 10; i++ {
		if a.errs[i] == nil {
			t.Errorf("event %d answered with Seq %d; the stream refused it or an event before it", i, a.seqs[i])
		}
	}
	if got := b.fast.stored.Load(); got != 5 {
		t.Errorf("%d events stored by the fast batch, want 5", got)
	}
	info, err := b.stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 6 {
		t.Errorf("the stream holds %d messages, want 6: the first event and the five before the refused one", info.State.Msgs)
	}
	checkChain(t, b, "hot")
}

// TestFastRunsThroughARestart: the server restarts while a node appends a
// busy topic's runs as fast batches (pipelineThrough).
func TestFastRunsThroughARestart(t *testing.T) {
	srv := jstest.Start(t)
	b := startFastNode(t, srv.URL(), "restart", "hot", 1)
	pipelineThrough(t, b, func(*answers) bool { return b.fast.stored.Load() > 500 }, srv.Restart)
}

// TestRunsOnAReplicatedStream: on a stream of three replicas, which takes
// no fast batches (fast.go), the stream's leader steps down while a node
// appends a busy topic's runs as atomic batches (pipelineThrough).
func TestRunsOnAReplicatedStream(t *testing.T) {
	c := jstest.StartCluster(t, 3)
	b, err := New(t.Context(), Options{URL: c.URLs(), Prefix: "replicated", Replicas: 3, Timeout: 5 * time.Second, MaxEvents: 10000, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if b.fast.on.Load() {
		t.Fatal("a stream of three replicas takes fast batches")
	}
	pipelineThrough(t, b, func(a *answers) bool { return a.count.Load() > 500 }, func() {
		if _, err := b.nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+b.streamName, nil, 5*time.Second); err != nil {
			t.Errorf("stepping the stream's leader down: %v", err)
		}
	})
}

// pipelineThrough appends 6,000 events to one topic, 256 in flight, and
// disrupts the stream once ready reports true. Every event answered
// with a sequence is stored there, once; no two events share a sequence;
// and the topic's chain holds. An event answered with an error may or may
// not be stored (ErrUnavailable says so), but never ahead of an event
// handed over before it.
func pipelineThrough(t *testing.T, b *Broker, ready func(*answers) bool, disrupt func()) *answers {
	const n = 6000
	a := &answers{}
	a.seqs, a.errs = make([]uint64, n), make([]error, n)
	window := make(chan struct{}, 256)
	disrupted := make(chan struct{})
	go func() {
		defer close(disrupted)
		if err := poll.Wait(30*time.Second, "the appends to be going", func() bool { return ready(a) }); err != nil {
			t.Error(err)
			return
		}
		disrupt()
	}()
	for i := range n {
		window <- struct{}{}
		a.wg.Add(1)
		b.PublishAsync(t.Context(), &broker.Event{Topic: "hot", Type: "t", Payload: []byte(fmt.Sprint(i))}, func(res broker.PublishResult, err error) {
			a.mu.Lock()
			a.seqs[i], a.errs[i] = res.Seq, err
			a.mu.Unlock()
			a.count.Add(1)
			<-window
			a.wg.Done()
		})
	}
	a.wg.Wait()
	<-disrupted
	// Read back once the node's connection is back.
	if err := poll.Wait(30*time.Second, "the stream to answer", func() bool {
		_, err := b.stream.Info(t.Context())
		return err == nil
	}); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	ok, failed := 0, 0
	for i := range n {
		if a.errs[i] != nil {
			failed++
			continue
		}
		ok++
		a.stored(t, b, i)
		if j, dup := seen[a.seqs[i]]; dup {
			t.Fatalf("events %d and %d both answered with Seq %d", j, i, a.seqs[i])
		}
		seen[a.seqs[i]] = i
	}
	// Stored events are in the order handed over, whether answered or not.
	last := -1
	for seq := uint64(1); ; {
		msg, err := b.stream.GetMsg(t.Context(), seq, natsjs.WithGetMsgSubject(b.subjPrefix+"hot"))
		if err != nil {
			break
		}
		ev, err := wire.Decode(msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		var i int
		if _, err := fmt.Sscan(string(ev.Payload), &i); err == nil {
			if i <= last {
				t.Fatalf("event %d is stored at Seq %d, after event %d", i, msg.Sequence, last)
			}
			last = i
		}
		seq = msg.Sequence + 1
	}
	checkChain(t, b, "hot")
	t.Logf("%d answered with a sequence, %d with an error; %d stored by fast batches", ok, failed, b.fast.stored.Load())
	return a
}

// TestCloseAnswersAFastBatchInFlight: a node closes while a fast batch it
// sent has no answer (a plain subscriber takes the appends instead of the
// deleted stream). Its events are answered with ErrClosed at once, not a
// call timeout (an hour here) later.
func TestCloseAnswersAFastBatchInFlight(t *testing.T) {
	srv := jstest.Start(t)
	b, err := New(t.Context(), Options{URL: srv.URL(), Prefix: "closing", Timeout: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Publish(t.Context(), &broker.Event{Topic: "hot", Type: "t"}); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync(b.subjPrefix + ">")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := b.js.DeleteStream(t.Context(), b.streamName); err != nil {
		t.Fatal(err)
	}

	ts := b.topics["hot"]
	var a answers
	run := a.pending(b, "hot", 10)
	if !b.takeFast(ts, run) {
		t.Fatal("the node does not try a fast batch though its last append is its topic's")
	}
	b.fast.busy.Store(false)
	go b.appendRun(ts, run)
	if _, err := sub.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("the batch did not go out: %v", err)
	}
	b.Close()
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the batch's events were not answered after Close")
	}
	for i, err := range a.errs {
		if !errors.Is(err, broker.ErrClosed) {
			t.Errorf("event %d: %v; want ErrClosed", i, err)
		}
	}
}

// TestFastRunRefusedBeforeTheBatch: the stream refuses an event of a fast
// batch by a limit it checks before it looks at the batch (here the
// stream's largest message), the sixth or the last. It stores the events
// before it and nothing after it, and the node answers those with their
// sequences and the others with errors. Taking that refusal for one of the
// first message (nothing stored) would append the stored events again, or
// answer them with errors; waiting for a PubAck that a batch without its
// last message never sends would answer every event with a timeout error.
func TestFastRunRefusedBeforeTheBatch(t *testing.T) {
	for _, bad := range []int{5, 9} {
		t.Run(fmt.Sprint("event ", bad), func(t *testing.T) {
			srv := jstest.Start(t)
			b := startFastNode(t, srv.URL(), fmt.Sprint("early", bad), "hot", 1)
			cfg := b.stream.CachedInfo().Config
			cfg.MaxMsgSize = 4096
			if _, err := b.js.UpdateStream(t.Context(), cfg); err != nil {
				t.Fatal(err)
			}
			ts := b.topics["hot"]
			var a answers
			run := a.pending(b, "hot", 10)
			run[bad].msg.Data = append(run[bad].msg.Data, make([]byte, 8192)...)
			appendFastRun(t, b, &a, ts, run)
			for i := range bad {
				a.stored(t, b, i)
				if want := uint64(2 + i); a.seqs[i] != want {
					t.Errorf("event %d: Seq %d, want %d", i, a.seqs[i], want)
				}
			}
			for i := bad; i < 10; i++ {
				if a.errs[i] == nil {
					t.Errorf("event %d answered with Seq %d; the stream refused it or an event before it", i, a.seqs[i])
				}
			}
			info, err := b.stream.Info(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if want := uint64(1 + bad); info.State.Msgs != want {
				t.Errorf("the stream holds %d messages, want %d: the first event and the %d before the refused one", info.State.Msgs, want, bad)
			}
			checkChain(t, b, "hot")
		})
	}
}

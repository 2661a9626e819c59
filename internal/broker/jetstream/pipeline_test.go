package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/jetstream/jstest"
	"github.com/heraldhq/herald/internal/broker/wire"
)

// TestPipelinedChainAcrossNodes: two nodes pipeline events to one topic at
// once. Each node's events are accepted in the order handed over, runs go
// out as atomic batches, and every message's chain names its real
// predecessor on the topic: Herald-Prev exactly for the first of a run,
// the message just before it in the stream for the others (Herald-Run).
// A run that got interleaved with the other node's events, or a head
// whose expected last sequence was not checked, breaks it.
func TestPipelinedChainAcrossNodes(t *testing.T) {
	srv := jstest.Start(t)
	ctx := t.Context()
	var nodes [2]*Broker
	for i := range nodes {
		b, err := New(ctx, Options{URL: srv.URL(), Prefix: "chain", Timeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if !b.atomic {
			t.Fatal("the stream does not take atomic batches; the server is 2.12 or newer")
		}
		nodes[i] = b
	}
	const perNode = 400
	seqs := make([][]uint64, len(nodes))
	var wg sync.WaitGroup
	for n, b := range nodes {
		seqs[n] = make([]uint64, perNode)
		wg.Go(func() {
			var answered sync.WaitGroup
			for i := range perNode {
				answered.Add(1)
				ev := &broker.Event{Topic: "hot", Type: "t", Payload: []byte(fmt.Sprintf("%d/%d", n, i))}
				b.PublishAsync(ctx, ev, func(res broker.PublishResult, err error) {
					defer answered.Done()
					if err != nil {
						t.Errorf("node %d event %d: %v", n, i, err)
					}
					seqs[n][i] = res.Seq
				})
			}
			answered.Wait()
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for n := range nodes {
		for i := range perNode {
			if i > 0 && seqs[n][i] <= seqs[n][i-1] {
				t.Fatalf("node %d: event %d got Seq %d after Seq %d", n, i, seqs[n][i], seqs[n][i-1])
			}
			// The answer names the event's own message.
			msg, err := nodes[0].stream.GetMsg(ctx, seqs[n][i])
			if err != nil {
				t.Fatalf("node %d event %d, answered with Seq %d: %v", n, i, seqs[n][i], err)
			}
			if ev, err := wire.Decode(msg.Data); err != nil || string(ev.Payload) != fmt.Sprintf("%d/%d", n, i) {
				t.Fatalf("node %d event %d was answered with Seq %d, which holds %q (%v)", n, i, seqs[n][i], ev.Payload, err)
			}
		}
	}
	// Read the topic back with each message's headers, in stream order.
	runs := checkChain(t, nodes[0], "hot")
	if runs == 0 {
		t.Fatal("no event followed another in an atomic batch: nothing was pipelined on the topic")
	}
	t.Logf("%d of %d events followed another in a batch", runs, 2*perNode)
}

// checkChain reads topic back from the stream, in stream order, and checks
// that each message names its predecessor on the topic: in Herald-Prev, or
// with Herald-Run as the message just before it in the stream. It returns
// how many messages of the topic are marked Herald-Run.
func checkChain(t *testing.T, b *Broker, topic string) (runs int) {
	t.Helper()
	var prevOnTopic uint64
	for seq := uint64(1); ; {
		msg, err := b.stream.GetMsg(t.Context(), seq, natsjs.WithGetMsgSubject(b.subjPrefix+topic))
		if err != nil {
			return runs
		}
		if msg.Header.Get(runHeader) != "" {
			runs++
			if msg.Sequence-1 != prevOnTopic {
				t.Fatalf("Seq %d is marked as following the message before it, but its topic's previous message is Seq %d", msg.Sequence, prevOnTopic)
			}
		} else if got, _ := strconv.ParseUint(msg.Header.Get(prevHeader), 10, 64); got != prevOnTopic {
			t.Fatalf("Seq %d: Herald-Prev %d; its topic's previous message is Seq %d", msg.Sequence, got, prevOnTopic)
		}
		prevOnTopic = msg.Sequence
		seq = msg.Sequence + 1
	}
}

// TestAppendInFlightWithoutAnswer: an append sent without waiting
// (inflight.go) that gets no answer is answered all the same: soon after
// its caller gives up, with ErrUnavailable wrapping the caller's error (the
// stream may still store it), and otherwise once the call timeout passed,
// with ErrUnavailable for no answer. The stream is deleted under a node
// that knows its topics, and a plain subscriber that never replies takes
// the appends instead.
func TestAppendInFlightWithoutAnswer(t *testing.T) {
	srv := jstest.Start(t)
	ctx := t.Context()
	silence := func(prefix string, timeout time.Duration) (*Broker, *nats.Subscription) {
		b, err := New(ctx, Options{URL: srv.URL(), Prefix: prefix, Timeout: timeout, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		if _, err := b.Publish(ctx, &broker.Event{Topic: "a", Type: "t"}); err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		sub, err := nc.SubscribeSync(b.subjPrefix + ">")
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := b.js.DeleteStream(ctx, b.streamName); err != nil {
			t.Fatal(err)
		}
		return b, sub
	}
	publish := func(b *Broker, ctx context.Context, sub *nats.Subscription) <-chan error {
		t.Helper()
		answered := make(chan error, 1)
		b.PublishAsync(ctx, &broker.Event{Topic: "a", Type: "t"}, func(_ broker.PublishResult, err error) { answered <- err })
		if _, err := sub.NextMsg(10 * time.Second); err != nil {
			t.Fatalf("the append did not go out: %v", err)
		}
		return answered
	}
	wait := func(answered <-chan error, what string) error {
		t.Helper()
		select {
		case err := <-answered:
			return err
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: no answer", what)
			return nil
		}
	}

	// The caller gives up long before the call timeout.
	b, sub := silence("gone", time.Hour)
	cctx, cancel := context.WithCancel(ctx)
	answered := publish(b, cctx, sub)
	cancel()
	if err := wait(answered, "a caller that gave up"); !errors.Is(err, broker.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("an append in flight whose caller gave up: %v; want ErrUnavailable wrapping context.Canceled", err)
	}

	// Nobody gives up: the call timeout answers.
	b, sub = silence("mute", 300*time.Millisecond)
	err := wait(publish(b, ctx, sub), "an append without an answer")
	if !errors.Is(err, broker.ErrUnavailable) || !strings.Contains(err.Error(), "no answer within 300ms") {
		t.Errorf("an append in flight without an answer: %v; want ErrUnavailable, no answer within the timeout", err)
	}
}

// A duplicate whose original, as the stream names it, is another topic's
// message is refused: the stream holds a message Herald did not append
// (here, a foreign writer's with the message id of this topic's key), and
// answering with its sequence would give the event that message's id.
func TestDuplicateOfAnotherTopicsMessageIsRefused(t *testing.T) {
	srv := jstest.Start(t)
	ctx := t.Context()
	b, err := New(ctx, Options{URL: srv.URL(), Prefix: "dup", Timeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	foreign := nats.NewMsg("dup.ev.other")
	foreign.Header.Set(natsjs.MsgIDHeader, `room "k1"`)
	foreign.Data = []byte("not an event")
	stored, err := js.PublishMsg(ctx, foreign)
	if err != nil {
		t.Fatal(err)
	}

	res, err := b.Publish(ctx, &broker.Event{Topic: "room", Type: "t", TypeURL: "type.googleapis.com/t", IdempotencyKey: "k1", Fingerprint: "fp"})
	if !errors.Is(err, broker.ErrUnavailable) || !strings.Contains(err.Error(), "dup.ev.other") {
		t.Fatalf("Publish = %+v, %v; want ErrUnavailable naming the other topic's subject (sequence %d)", res, err, stored.Sequence)
	}
	// The topic still takes events without a key.
	if _, err := b.Publish(ctx, &broker.Event{Topic: "room", Type: "t", TypeURL: "type.googleapis.com/t"}); err != nil {
		t.Fatal(err)
	}
}

package jetstream

import (
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/jetstream/jstest"
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
		for i := 1; i < perNode; i++ {
			if seqs[n][i] <= seqs[n][i-1] {
				t.Fatalf("node %d: event %d got Seq %d after Seq %d", n, i, seqs[n][i], seqs[n][i-1])
			}
		}
	}
	// Read the topic back with each message's headers, in stream order.
	b := nodes[0]
	var prevOnTopic uint64
	runs := 0
	for seq := uint64(1); ; {
		msg, err := b.stream.GetMsg(ctx, seq, natsjs.WithGetMsgSubject(b.subjPrefix+"hot"))
		if err != nil {
			break
		}
		want := prevOnTopic
		if msg.Header.Get(runHeader) != "" {
			runs++
			if msg.Sequence-1 != prevOnTopic {
				t.Fatalf("Seq %d is marked as following the message before it, but its topic's previous message is Seq %d", msg.Sequence, prevOnTopic)
			}
		} else if got, _ := strconv.ParseUint(msg.Header.Get(prevHeader), 10, 64); got != want {
			t.Fatalf("Seq %d: Herald-Prev %d; its topic's previous message is Seq %d", msg.Sequence, got, want)
		}
		prevOnTopic = msg.Sequence
		seq = msg.Sequence + 1
	}
	if runs == 0 {
		t.Fatal("no event followed another in an atomic batch: nothing was pipelined on the topic")
	}
	t.Logf("%d of %d events followed another in a batch", runs, 2*perNode)
}

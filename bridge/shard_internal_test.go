package bridge

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// loopbackPair returns the two ends of a loopback TCP connection, the
// server end with a small send buffer.
func loopbackPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); sc.Close() })
	_ = sc.(*net.TCPConn).SetWriteBuffer(8 << 10)
	return sc.(*net.TCPConn), c.(*net.TCPConn)
}

// A shard's write that the socket takes only in part leaves the rest to
// the stream's goroutine, queued in its place; when that goroutine takes
// the connection back for the stream's last words before it wrote the
// rest, detach must hand the rest over, or the client would get a torn
// frame.
func TestDetachHandsOverTheUnwrittenRest(t *testing.T) {
	h := newHub(epochBroker{}, protoregistry.GlobalTypes, slog.New(slog.DiscardHandler), newMetrics(), 4)
	sh := newShard(h)
	srv, cli := loopbackPair(t)
	s := &subscriber{queue: newItemQueue(4), done: make(chan struct{}), d: &direct{}}
	if !s.d.attach(srv) {
		t.Fatal("a TCP connection cannot be written directly")
	}
	frame := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: more than the buffers hold
	s.d.mu.Lock()
	sh.writeLocked(s, frame, true)
	lagging := s.d.lagging
	s.d.mu.Unlock()
	if !lagging {
		t.Fatal("a write the socket could not take whole did not put the subscriber behind")
	}
	if it, ok := s.queue.pop(); !ok || it.kind != itemRestOfFrame || s.queue.len() != 0 {
		t.Fatal("the rest of the frame was not queued in its place")
	}

	rest := s.d.detach()
	if len(rest) == 0 || len(rest) >= len(frame) {
		t.Fatalf("detach returned %d bytes of a %d-byte frame, want the unwritten part", len(rest), len(frame))
	}
	if p := s.d.takePending(); p != nil {
		t.Fatalf("the rest of the frame can be taken twice (%d bytes)", len(p))
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(cli)
		got <- b
	}()
	_ = srv.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := srv.Write(rest); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if b := <-got; !bytes.Equal(b, frame) {
		t.Fatalf("client got %d bytes, not the frame", len(b))
	}

	// Once detached, the shard leaves the connection alone.
	s.d.mu.Lock()
	closed := s.d.closed
	s.d.mu.Unlock()
	if !closed {
		t.Fatal("detach did not close the subscriber to its shard")
	}
}

// directSubscribers subscribes n direct subscribers to topic on a hub with
// one shard, each attached to a loopback connection whose client end a
// goroutine reads and discards, and hands them to the shard.
func directSubscribers(tb testing.TB, h *Hub, topic string, n int) (*shard, []*subscriber) {
	tb.Helper()
	sh := newShard(h)
	h.shards = []*shard{sh}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	p, err := broker.ParsePattern(topic)
	if err != nil {
		tb.Fatal(err)
	}
	subs := make([]*subscriber, n)
	for i := range subs {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			tb.Fatal(err)
		}
		sc, err := ln.Accept()
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { c.Close(); sc.Close() })
		go func() {
			buf := make([]byte, 64<<10)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
		s, err := h.subscribeDirect("", []broker.Pattern{p}, nil, nil, false)
		if err != nil {
			tb.Fatal(err)
		}
		if s.d == nil || !s.d.attach(sc) || !s.d.settle(s) {
			tb.Fatal("not a direct subscriber")
		}
		subs[i] = s
	}
	return sh, subs
}

// deliverDirect delivers ev and, when the shard's goroutine would write it,
// writes it in this goroutine instead.
func deliverDirect(h *Hub, sh *shard, ev *broker.Event) {
	h.deliver(ev)
	select {
	case <-sh.wake:
		sh.drain(false)
	default: // written inline
	}
}

// BenchmarkShardFanout is the fan-out to direct streams: one event written
// to n loopback sockets by a shard, the write(2) included. It must not
// allocate per delivery.
func BenchmarkShardFanout(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			h := newBenchHub(b, 256)
			sh, subs := directSubscribers(b, h, "bench.t00000", n)
			ev := chatEvent(b, "bench.t00000")
			ev.Seq = 1
			deliverDirect(h, sh, ev)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				ev.Seq = uint64(i) + 2
				deliverDirect(h, sh, ev)
			}
			b.StopTimer()
			lagged := 0
			for _, s := range subs {
				s.d.mu.Lock()
				if s.d.lagging {
					lagged++
				}
				s.d.mu.Unlock()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
			b.ReportMetric(float64(lagged), "lagging")
		})
	}
}

// BenchmarkShardFanoutBatch is the fan-out of a shard that is behind:
// 8 events pending at once, gathered per subscriber and written to each
// of 100 loopback sockets with one write(2).
func BenchmarkShardFanoutBatch(b *testing.B) {
	const n, batch = 100, 8
	h := newBenchHub(b, 256)
	sh, _ := directSubscribers(b, h, "bench.t00000", n)
	evs := make([]*broker.Event, batch)
	seq := uint64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for i := range evs {
			seq++
			evs[i] = chatEvent(b, "bench.t00000")
			evs[i].Seq = seq
		}
		b.StartTimer()
		for _, e := range evs {
			h.deliver(e) // the first wakes the shard, the rest queue behind it
		}
		<-sh.wake
		sh.drain(false)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n*batch), "ns/delivery")
}

// TestShardFanoutDoesNotAllocate keeps the direct fan-out path free of
// allocations per delivery and per event once the frame is encoded.
func TestShardFanoutDoesNotAllocate(t *testing.T) {
	h := newBenchHub(t, 256)
	sh, subs := directSubscribers(t, h, "bench.t00000", 100)
	ev := chatEvent(t, "bench.t00000")
	ev.Seq = 1
	deliverDirect(h, sh, ev)
	allocs := testing.AllocsPerRun(50, func() {
		ev.Seq++
		deliverDirect(h, sh, ev)
	})
	if allocs != 0 {
		t.Errorf("writing an encoded event to 100 direct streams allocates %v times, want 0", allocs)
	}
	for _, s := range subs {
		if s.d.lagging || s.lastSeq != ev.Seq {
			t.Fatalf("a subscriber lags or missed the last event (lastSeq %d, want %d)", s.lastSeq, ev.Seq)
		}
	}
}

// A broker's LostType marker (its subscription fell behind retention and
// events of the topic are gone) ends that topic's streams, direct and
// queued, as too slow, so that they resume and hear of the gap from the
// history; other topics' streams go on.
func TestLostEventsEndTheirTopicsStreams(t *testing.T) {
	h := newHub(epochBroker{}, protoregistry.GlobalTypes, slog.New(slog.DiscardHandler), newMetrics(), 4)
	_, direct := directSubscribers(t, h, "chat.lobby", 3)
	p, _ := broker.ParsePattern("chat.*")
	queued, err := h.subscribe("", []broker.Pattern{p}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := broker.ParsePattern("chat.other")
	bystander, err := h.subscribe("", []broker.Pattern{other}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.deliver(&broker.Event{Topic: "chat.lobby", Type: broker.LostType, Seq: 42})
	for i, s := range append(direct, queued) {
		if r := s.reason.Load(); r != dropSlow {
			t.Errorf("subscriber %d of the topic: drop reason %d, want dropSlow", i, r)
		}
		if s.queue.len() != 0 {
			t.Errorf("subscriber %d got the marker queued as an event", i)
		}
	}
	if r := bystander.reason.Load(); r != dropNone {
		t.Errorf("a subscriber of another topic was dropped (reason %d)", r)
	}
	// Nothing after the gap reaches them before their streams end: a
	// stream that got it would resume after it and never hear of the gap.
	next := &broker.Event{Topic: "chat.lobby", Type: "t", Seq: 42}
	h.deliver(next)
	if queued.queue.len() != 0 {
		t.Error("the queued subscriber got the event after the gap")
	}
	for i, s := range direct {
		s.d.mu.Lock()
		admitted := h.shards[0].admit(s, item{ev: next})
		s.d.mu.Unlock()
		if admitted {
			t.Errorf("direct subscriber %d would be written the event after the gap", i)
		}
	}
}

// A LostType marker with no topic (the broker lost events but cannot tell
// of which topics) ends every stream, direct and queued, whatever its
// topics: each resumes and Replay tells it whether it missed anything.
func TestLostEventsOfEveryTopicEndEveryStream(t *testing.T) {
	h := newHub(epochBroker{}, protoregistry.GlobalTypes, slog.New(slog.DiscardHandler), newMetrics(), 4)
	_, direct := directSubscribers(t, h, "chat.lobby", 2)
	var queued []*subscriber
	for _, pattern := range []string{"chat.*", "orders.eu", ">"} {
		p, _ := broker.ParsePattern(pattern)
		s, err := h.subscribe("", []broker.Pattern{p}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		queued = append(queued, s)
	}
	h.deliver(&broker.Event{Type: broker.LostType, Seq: 42})
	for i, s := range append(direct, queued...) {
		if r := s.reason.Load(); r != dropSlow {
			t.Errorf("subscriber %d: drop reason %d, want dropSlow", i, r)
		}
	}
	next := &broker.Event{Topic: "orders.eu", Type: "t", Seq: 42}
	h.deliver(next)
	for i, s := range queued {
		if s.queue.len() != 0 {
			t.Errorf("queued subscriber %d got an event after the gap", i)
		}
	}
}

// TestLostEventsOfUnnamedTopicsEndSpanningStreams: where the broker finds
// events lost before it can name their topics (broker.LostSpanningType),
// every stream of a pattern or of several topics ends at once, as it would
// be handed another topic's later event next; a stream of one topic goes
// on, to end at its own topic's marker if the topic lost any.
func TestLostEventsOfUnnamedTopicsEndSpanningStreams(t *testing.T) {
	h := newHub(epochBroker{}, protoregistry.GlobalTypes, slog.New(slog.DiscardHandler), newMetrics(), 4)
	_, direct := directSubscribers(t, h, "chat.lobby", 2)
	sub := func(patterns ...string) *subscriber {
		t.Helper()
		var ps []broker.Pattern
		for _, p := range patterns {
			pp, err := broker.ParsePattern(p)
			if err != nil {
				t.Fatal(err)
			}
			ps = append(ps, pp)
		}
		s, err := h.subscribe("", ps, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	spanning := []*subscriber{sub("chat.*"), sub(">"), sub("orders.eu", "orders.us")}
	single := append([]*subscriber{sub("orders.eu")}, direct...)
	h.deliver(&broker.Event{Type: broker.LostSpanningType, Seq: 42})
	for i, s := range spanning {
		if r := s.reason.Load(); r != dropSlow {
			t.Errorf("spanning subscriber %d: drop reason %d, want dropSlow", i, r)
		}
	}
	for i, s := range single {
		if r := s.reason.Load(); r != dropNone {
			t.Errorf("single-topic subscriber %d: dropped (%d) for a loss it may not have had", i, r)
		}
	}
	h.deliver(&broker.Event{Topic: "orders.eu", Type: "t", Seq: 42})
	for i, s := range spanning {
		if s.queue.len() != 0 {
			t.Errorf("spanning subscriber %d got an event after the loss", i)
		}
	}
	if single[0].queue.len() != 1 {
		t.Errorf("the orders.eu subscriber has %d events queued, want the one delivered", single[0].queue.len())
	}
}

// A shard that events reach more often than its coalescing window holds
// the next pass until the window has passed since the last one began,
// and then writes each subscriber everything that came meanwhile with one
// write: four events delivered just after one that went out at once reach
// the client together, in one read, no sooner than the window allows.
func TestShardCoalescesEventsWithinItsWindow(t *testing.T) {
	const window = 100 * time.Millisecond
	h := newBenchHub(t, 256)
	h.coalesce = window
	// inlineMax silent subscribers and this one: more than the
	// delivering goroutine writes itself, so the shard's goroutine does.
	sh, _ := directSubscribers(t, h, "chat.busy", inlineMax)
	server, client := loopbackPair(t)
	p, err := broker.ParsePattern("chat.busy")
	if err != nil {
		t.Fatal(err)
	}
	s, err := h.subscribeDirect("", []broker.Pattern{p}, nil, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if !s.d.attach(server) || !s.d.settle(s) {
		t.Fatal("not a direct subscriber")
	}
	stop := make(chan struct{})
	sh.stop = stop
	h.done.Add(1)
	go sh.loop()
	t.Cleanup(func() { close(stop); h.done.Wait() })

	ev := func(seq uint64) *broker.Event {
		e := chatEvent(t, "chat.busy")
		e.Seq = seq
		return e
	}
	first := ev(1)
	frame := h.frameFor(first, nil)
	buf := make([]byte, 64<<10)
	got := 0
	start := time.Now() // the first pass begins after this
	for got < len(frame) {
		if got == 0 {
			h.deliver(first)
		}
		n, err := client.Read(buf[got:])
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	for seq := uint64(2); seq <= 5; seq++ {
		h.deliver(ev(seq))
	}
	n, err := client.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if since := time.Since(start); since < window {
		t.Errorf("the next events came %v after the first was delivered, within the %v window", since, window)
	}
	if frames := bytes.Count(buf[:n], []byte("\n\n")); frames != 4 {
		t.Errorf("the first read after the window holds %d frames, want the 4 events delivered meanwhile in one write:\n%s", frames, buf[:n])
	}
}

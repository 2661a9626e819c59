package client_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/heraldhq/herald/bridge"
	"github.com/heraldhq/herald/client"
	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/poll"
)

func order(id string) *ordersv1.OrderPlaced {
	return &ordersv1.OrderPlaced{OrderId: id, Customer: "Zoë 山田", TotalCents: 4200, Currency: "EUR", Channel: ordersv1.Channel_CHANNEL_WEB}
}

// replay returns every retained event on topics matching pattern.
func replay(t testing.TB, h *herald, pattern string) []*broker.Event {
	t.Helper()
	p, err := broker.ParsePattern(pattern)
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.broker.Replay(ctxT(t), []broker.Pattern{p}, broker.EventID{Epoch: h.broker.Epoch()})
	if err != nil || res.Truncated {
		t.Fatalf("replay: %v (truncated %v)", err, res.Truncated)
	}
	return res.Events
}

func payloadOf(t testing.TB, ev *broker.Event) proto.Message {
	t.Helper()
	msg, err := anypb.UnmarshalNew(&anypb.Any{TypeUrl: ev.TypeURL, Value: ev.Payload}, proto.UnmarshalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestPublish(t *testing.T) {
	h := startServer(t, serverOpts{})
	c := newClient(t, h.addr)

	id, err := c.Publish(ctxT(t), "orders.eu", order("o-1"),
		client.WithType("order-placed"), client.WithAttributes(map[string]string{"source": "test"}), client.WithAttributes(map[string]string{"ünï": "✓"}))
	if err != nil {
		t.Fatal(err)
	}
	evs := replay(t, h, "orders.eu")
	if len(evs) != 1 {
		t.Fatalf("%d events in the broker, want 1", len(evs))
	}
	ev := evs[0]
	if want := (broker.EventID{Epoch: h.broker.Epoch(), Seq: ev.Seq}).String(); id != want {
		t.Errorf("id = %q, want %q", id, want)
	}
	if ev.Type != "order-placed" || ev.TypeURL != "type.googleapis.com/orders.v1.OrderPlaced" || ev.Attributes["source"] != "test" || ev.Attributes["ünï"] != "✓" {
		t.Errorf("event = %+v", ev)
	}
	if ev.IdempotencyKey == "" {
		t.Error("Publish sent no idempotency key, so its retries could duplicate")
	}
	if got := payloadOf(t, ev); !proto.Equal(got, order("o-1")) {
		t.Errorf("payload = %v", got)
	}

	// The same key: no second event, the first id.
	first, err := c.Publish(ctxT(t), "orders.eu", order("o-2"), client.WithIdempotencyKey("order-o-2"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Publish(ctxT(t), "orders.eu", order("o-2"), client.WithIdempotencyKey("order-o-2"))
	if err != nil || again != first {
		t.Fatalf("republish with the same key = %q, %v; want %q", again, err, first)
	}
	if n := len(replay(t, h, "orders.eu")); n != 2 {
		t.Fatalf("%d events, want 2", n)
	}
}

func TestPublishErrors(t *testing.T) {
	h := startServer(t, serverOpts{})
	c := newClient(t, h.addr)
	for _, tc := range []struct {
		name  string
		topic string
		msg   proto.Message
		opts  []client.PublishOption
		want  string
	}{
		{"bad topic", "orders..eu", order("o-1"), nil, "empty token"},
		{"nil message", "orders.eu", nil, nil, "message is nil"},
		{"unknown type", "orders.eu", &anypb.Any{TypeUrl: "type.googleapis.com/acme.v1.Nope"}, nil, "google.protobuf.Any"},
		{"reserved type", "orders.eu", order("o-1"), []client.PublishOption{client.WithType("herald.x")}, "reserved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Publish(ctxT(t), tc.topic, tc.msg, tc.opts...)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) || client.Retryable(err) {
				t.Fatalf("err = %v, want a final INVALID_ARGUMENT mentioning %q", err, tc.want)
			}
		})
	}

	// Nobody listening: UNAVAILABLE, which is retryable.
	down := startServer(t, serverOpts{})
	dc := newClient(t, down.addr)
	// Serving first: Shutdown racing Serve's start is a known bridge race.
	if _, err := dc.Publish(ctxT(t), "orders.eu", order("o-0")); err != nil {
		t.Fatal(err)
	}
	if err := down.Shutdown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	_, err := dc.Publish(ctxT(t), "orders.eu", order("o-1"))
	if status.Code(err) != codes.Unavailable || !client.Retryable(err) {
		t.Fatalf("publish to a stopped server: %v, want a retryable UNAVAILABLE", err)
	}
}

// Publish retries UNAVAILABLE by itself, and every attempt carries the
// same idempotency key, so a retry of an accepted publish is harmless.
func TestPublishRetriesWithTheSameKey(t *testing.T) {
	f := &fakePublisher{failUnary: 2}
	c := newClient(t, startFake(t, f))
	id, err := c.Publish(ctxT(t), "orders.eu", order("o-1"))
	if err != nil || id != "fake-3" {
		t.Fatalf("Publish = %q, %v; want the third attempt's id", id, err)
	}
	calls := f.received()
	if len(calls) != 3 {
		t.Fatalf("%d attempts, want 3", len(calls))
	}
	for _, r := range calls {
		if k := r.GetIdempotencyKey(); k == "" || k != calls[0].GetIdempotencyKey() {
			t.Fatalf("attempt keys %q and %q: want one non-empty key for all attempts", calls[0].GetIdempotencyKey(), k)
		}
	}
	// Different publishes get different keys.
	if _, err := c.Publish(ctxT(t), "orders.eu", order("o-1")); err != nil {
		t.Fatal(err)
	}
	if k := f.received()[3].GetIdempotencyKey(); k == calls[0].GetIdempotencyKey() {
		t.Fatal("two publishes shared a generated idempotency key")
	}

	// Large events are retried too (gRPC keeps only 256 KiB for retries
	// unless told otherwise).
	f = &fakePublisher{failUnary: 1}
	c = newClient(t, startFake(t, f))
	big := &chatv1.ChatMessage{Text: strings.Repeat("x", 600<<10)}
	if _, err := c.Publish(ctxT(t), "chat.rooms.big", big); err != nil || len(f.received()) != 2 {
		t.Fatalf("large publish: %v after %d attempts, want success on the second", err, len(f.received()))
	}
}

func TestTokens(t *testing.T) {
	// Plaintext tokens only to this machine.
	for target, ok := range map[string]bool{
		"herald.example.com:9090":        false,
		"dns:///herald.example.com:9090": false,
		"10.0.0.7:9090":                  false,
		"localhost:9090":                 true,
		"dns:///localhost:9090":          true,
		"127.0.0.1:9090":                 true,
		"[::1]:9090":                     true,
		"unix:///run/herald.sock":        true,
	} {
		c, err := client.New(target, client.WithToken("s3cret"))
		if ok && err != nil || !ok && (err == nil || !strings.Contains(err.Error(), "WithTLS")) {
			t.Errorf("New(%q, WithToken) = %v; want accepted: %v", target, err, ok)
		}
		if c != nil {
			c.Close()
		}
	}

	// Over TLS, to any server.
	creds, tlsCfg := selfSigned(t)
	f := &fakePublisher{}
	c := newClient(t, startFake(t, f, creds), client.WithTLS(tlsCfg), client.WithToken("s3cret"))
	if _, err := c.Publish(ctxT(t), "orders.eu", order("o-1")); err != nil {
		t.Fatal(err)
	}
	p, err := c.NewStreamPublisher(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Publish(ctxT(t), "orders.eu", order("o-2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Wait(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	if len(f.auth) != 2 || f.auth[0] != "Bearer s3cret" || f.auth[1] != "Bearer s3cret" {
		t.Errorf("authorization seen by the server: %q, want the bearer token on both calls", f.auth)
	}
	f.mu.Unlock()

	// A real Herald that checks them, on loopback without TLS.
	h := startServer(t, serverOpts{cfg: bridge.Config{Auth: tokenAuth{"s3cret": {publish: "orders.>", subscribe: "orders.eu"}}}})
	good := newClient(t, h.addr, client.WithToken("s3cret"))
	id, err := good.Publish(ctxT(t), "orders.eu", order("o-3"))
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range good.Subscribe(ctxT(t), []string{"orders.*"}) {
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("subscribing beyond the grant: %v, want PERMISSION_DENIED", err)
		}
	}
	next, err := good.Publish(ctxT(t), "orders.eu", order("o-4"))
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for ev, err := range good.Subscribe(ctxT(t), []string{"orders.eu"}, client.WithLastEventID(id)) {
		if err != nil {
			t.Fatal(err)
		}
		got = ev.ID
		break
	}
	if got != next {
		t.Fatalf("subscription with the token got %q, want %q", got, next)
	}
	// A stream the server refuses fails what is pending, without
	// reconnecting in a loop, and the publisher goes on.
	bad, err := newClient(t, h.addr, client.WithToken("wrong")).NewStreamPublisher(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	r1, _ := bad.Publish(ctxT(t), "orders.eu", order("o-6"))
	r2, _ := bad.Publish(ctxT(t), "orders.eu", order("o-7"))
	for _, r := range []*client.Result{r1, r2} {
		if _, err := r.Wait(ctxT(t)); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("event on a refused stream: %v, want UNAUTHENTICATED", err)
		}
	}
	r3, err := bad.Publish(ctxT(t), "orders.eu", order("o-8"))
	if err != nil {
		t.Fatalf("publisher stopped after a refused stream: %v", err)
	}
	if err := r3.Err(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("next event: %v, want UNAUTHENTICATED again", err)
	}
	if err := bad.Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := newClient(t, h.addr).Publish(ctxT(t), "orders.eu", order("o-5")); status.Code(err) != codes.Unauthenticated || client.Retryable(err) {
		t.Fatalf("publish without a token: %v, want a final UNAUTHENTICATED", err)
	}
}

// tokenAuth is a auth.Authenticator for tests: token → grants, each
// token its own publish rate key.
type tokenAuth map[string]struct{ publish, subscribe string }

func (a tokenAuth) Authenticate(_ context.Context, c auth.Credentials) (auth.Permissions, error) {
	g, ok := a[c.Token]
	if !ok {
		return auth.Permissions{}, fmt.Errorf("%w: unknown token", auth.ErrUnauthenticated)
	}
	pub, err := broker.ParsePattern(g.publish)
	if err != nil {
		return auth.Permissions{}, err
	}
	sub, err := broker.ParsePattern(g.subscribe)
	if err != nil {
		return auth.Permissions{}, err
	}
	return auth.Permissions{Publish: []broker.Pattern{pub}, Subscribe: []broker.Pattern{sub}, RateKey: c.Token}, nil
}

// A rate-limited publish is retryable, after the delay the server names.
func TestRateLimit(t *testing.T) {
	h := startServer(t, serverOpts{cfg: bridge.Config{
		Auth:        tokenAuth{"t": {publish: ">", subscribe: ">"}},
		PublishRate: 0.001, PublishBurst: 1,
	}})
	c := newClient(t, h.addr, client.WithToken("t"))
	if _, err := c.Publish(ctxT(t), "orders.eu", order("o-1")); err != nil {
		t.Fatal(err)
	}
	_, err := c.Publish(ctxT(t), "orders.eu", order("o-2"))
	if status.Code(err) != codes.ResourceExhausted || !client.Retryable(err) || client.RetryDelay(err) < time.Minute {
		t.Fatalf("publish over the rate: %v (retryable %v, delay %v), want a retryable RESOURCE_EXHAUSTED with the delay", err, client.Retryable(err), client.RetryDelay(err))
	}
	if err := status.Error(codes.ResourceExhausted, "grpc: received message larger than max"); client.Retryable(err) || client.RetryDelay(err) != 0 {
		t.Fatal("a RESOURCE_EXHAUSTED without RetryInfo is not a rate limit, and is final")
	}

	// The same through a StreamPublisher: the rejected event's result says
	// when to send it again, as the unary call does.
	sp, err := c.NewStreamPublisher(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	r, err := sp.Publish(ctxT(t), "orders.eu", order("o-3"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Wait(ctxT(t))
	if status.Code(err) != codes.ResourceExhausted || !client.Retryable(err) || client.RetryDelay(err) < time.Minute {
		t.Fatalf("stream publish over the rate: %v (retryable %v, delay %v), want a retryable RESOURCE_EXHAUSTED with the delay", err, client.Retryable(err), client.RetryDelay(err))
	}
}

// The ordering, exactly-once and no-loss test: 100,000 events through one
// StreamPublisher whose connection is cut twice mid-stream.
func TestStreamPublisherExactlyOnceAcrossConnectionDrops(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	const topic = "load.orders"
	// The broker retains everything, for Replay; the witness subscriber's
	// queue holds everything, so that the server never cuts it as slow
	// (that path has its own test) and each event is sent to it once.
	h := startServer(t, serverOpts{memory: memory.Options{MaxEvents: 2 * n}, cfg: bridge.Config{QueueSize: 2 * n}})
	px := startProxy(t, h.addr)
	// A guard against hangs, not a speed limit: on an idle 2-core machine
	// the test takes about 15s under -race, far longer on a loaded one.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// An independent subscriber, straight to the server, resuming after an
	// event published before everything else, so it cannot miss the start.
	start, err := newClient(t, h.addr).Publish(ctx, "load.start", order("start"))
	if err != nil {
		t.Fatal(err)
	}
	subDone := make(chan error, 1)
	subscriber := newClient(t, h.addr)
	var witnessed atomic.Int64 // events the broker accepted
	go func() {
		next := 0
		for ev, err := range subscriber.Subscribe(ctx, []string{topic}, client.WithLastEventID(start)) {
			if err != nil {
				subDone <- err
				return
			}
			if got, want := ev.Payload.(*ordersv1.OrderPlaced).GetOrderId(), fmt.Sprintf("%06d", next); got != want {
				subDone <- fmt.Errorf("subscriber got order %s, want %s", got, want)
				return
			}
			witnessed.Add(1)
			if next++; next == n {
				subDone <- nil
				return
			}
		}
		subDone <- fmt.Errorf("subscription ended after %d events", next)
	}()

	// Results come back in order; check them as they do.
	var resolved atomic.Int64
	var lastID broker.EventID
	var bad error
	count := 0
	p, err := newClient(t, px.addr).NewStreamPublisher(ctx, client.MaxInFlight(500), client.OnResult(func(r *client.Result) {
		id, ok := broker.ParseEventID(r.ID())
		switch {
		case bad != nil:
		case r.Err() != nil:
			bad = fmt.Errorf("event %d failed: %w", count, r.Err())
		case !ok || id.Seq <= lastID.Seq:
			bad = fmt.Errorf("event %d got id %q after %q", count, r.ID(), lastID)
		}
		lastID = id
		count++
		resolved.Add(1)
	}))
	if err != nil {
		t.Fatal(err)
	}
	// First drop: replies are held back until the server has accepted
	// hundreds of events the publisher has no acknowledgement for; only
	// their idempotency keys keep the resends from duplicating them.
	// Second drop: a plain cut, wherever the stream is.
	unacked := make(chan int64, 1)
	holdErr := make(chan error, 1)
	for i := range n {
		switch i {
		case n / 3:
			px.holdReplies()
			go func() {
				// Replies already past the proxy still resolve events, so
				// count from what is resolved at each look, not at the hold.
				var ahead int64
				err := poll.Wait(time.Minute, "events accepted beyond those acknowledged", func() bool {
					ahead = witnessed.Load() - resolved.Load()
					return ahead >= 300
				})
				unacked <- ahead
				px.sever()
				holdErr <- err
			}()
		case 2 * n / 3:
			px.sever()
		}
		if _, err := p.Publish(ctx, topic, &ordersv1.OrderPlaced{OrderId: fmt.Sprintf("%06d", i)}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if bad != nil {
		t.Fatal(bad)
	}
	if count != n {
		t.Fatalf("%d results, want %d", count, n)
	}
	if err := <-holdErr; err != nil {
		t.Fatal(err)
	}
	acceptedUnacked := <-unacked
	if px.connections() < 3 || acceptedUnacked < 300 {
		t.Fatalf("%d connections, %d events accepted but unacknowledged at the first drop: the drops did not happen mid-stream", px.connections(), acceptedUnacked)
	}

	// The broker holds each event exactly once, in publish order.
	evs := replay(t, h, topic)
	if len(evs) != n {
		t.Fatalf("the broker holds %d events, want %d", len(evs), n)
	}
	for i, ev := range evs {
		if got, want := payloadOf(t, ev).(*ordersv1.OrderPlaced).GetOrderId(), fmt.Sprintf("%06d", i); got != want {
			t.Fatalf("event %d in the broker is order %s, want %s", i, got, want)
		}
	}
	select {
	case err := <-subDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the subscriber did not see every event")
	}
	t.Logf("%d events, %d connections, %d accepted but unacknowledged at the first drop", n, px.connections(), acceptedUnacked)
}

// Publish blocks while MaxInFlight events are unresolved, and gives up when
// its context ends.
func TestStreamPublisherBackPressure(t *testing.T) {
	f := &fakePublisher{release: make(chan struct{})}
	c := newClient(t, startFake(t, f))
	p, err := c.NewStreamPublisher(ctxT(t), client.MaxInFlight(2))
	if err != nil {
		t.Fatal(err)
	}
	r1, err := p.Publish(ctxT(t), "a", order("1"))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := p.Publish(ctxT(t), "a", order("2"))
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctxT(t), 50*time.Millisecond)
	defer cancel()
	if _, err := p.Publish(short, "a", order("3")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third publish with 2 in flight: %v, want it to block until its deadline", err)
	}
	third := make(chan *client.Result, 1)
	go func() {
		r, err := p.Publish(ctxT(t), "a", order("3"))
		if err != nil {
			t.Error(err)
		}
		third <- r
	}()
	f.release <- struct{}{} // answer the first: room for the third
	if id, err := r1.Wait(ctxT(t)); err != nil || id != "fake-1" {
		t.Fatalf("first result: %q, %v", id, err)
	}
	r3 := <-third
	f.release <- struct{}{}
	f.release <- struct{}{}
	if err := p.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if r2.ID() != "fake-2" || r3.ID() != "fake-3" {
		t.Fatalf("ids %q %q, want fake-2 fake-3", r2.ID(), r3.ID())
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(ctxT(t), "a", order("4")); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("publish after Close: %v, want ErrClosed", err)
	}
}

// Cancelling the publisher's context fails what is pending, once each.
func TestStreamPublisherContextEnds(t *testing.T) {
	f := &fakePublisher{release: make(chan struct{})}
	c := newClient(t, startFake(t, f))
	ctx, cancel := context.WithCancel(ctxT(t))
	p, err := c.NewStreamPublisher(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rs []*client.Result
	for i := range 3 {
		r, err := p.Publish(ctxT(t), "a", order(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	cancel()
	for i, r := range rs {
		if err := r.Err(); status.Code(err) != codes.Canceled {
			t.Errorf("result %d: %v, want CANCELED", i, err)
		}
	}
	if err := p.Close(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want the context's error", err)
	}
}

// A rejected event fails alone, with the server's code; the stream goes on.
func TestStreamPublisherRejectedEvent(t *testing.T) {
	h := startServer(t, serverOpts{})
	p, err := newClient(t, h.addr).NewStreamPublisher(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	good1, _ := p.Publish(ctxT(t), "orders.eu", order("1"))
	bad, _ := p.Publish(ctxT(t), "orders..eu", order("2"))
	good2, _ := p.Publish(ctxT(t), "orders.eu", order("3"), client.WithIdempotencyKey("mine"))
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if good1.Err() != nil || good2.Err() != nil {
		t.Fatalf("good events failed: %v, %v", good1.Err(), good2.Err())
	}
	if err := bad.Err(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "empty token") || bad.ID() != "" {
		t.Fatalf("bad event: %q, %v; want INVALID_ARGUMENT naming the problem", bad.ID(), err)
	}
	if good2.IdempotencyKey() != "mine" || good1.IdempotencyKey() == "" || good1.Topic() != "orders.eu" {
		t.Fatalf("keys %q %q", good1.IdempotencyKey(), good2.IdempotencyKey())
	}
	if evs := replay(t, h, "orders.eu"); len(evs) != 2 || payloadOf(t, evs[1]).(*ordersv1.OrderPlaced).GetOrderId() != "3" {
		t.Fatalf("broker holds %d events, want the two good ones", len(evs))
	}
}

func TestSubscribeResumesExactlyAfterAnID(t *testing.T) {
	h := startServer(t, serverOpts{})
	c := newClient(t, h.addr)
	var ids []string
	for i := range 10 {
		topic := []string{"chat.rooms.a", "chat.rooms.b"}[i%2]
		id, err := c.Publish(ctxT(t), topic, &chatv1.ChatMessage{Room: topic, Text: fmt.Sprint("m", i)}, client.WithAttributes(map[string]string{"n": fmt.Sprint(i)}))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	i := 4
	for ev, err := range c.Subscribe(ctxT(t), []string{"chat.rooms.*"}, client.WithLastEventID(ids[4])) {
		if err != nil {
			t.Fatal(err)
		}
		i++
		msg, ok := ev.Payload.(*chatv1.ChatMessage)
		if ev.ID != ids[i] || !ok || msg.GetText() != fmt.Sprint("m", i) || ev.Topic != msg.GetRoom() ||
			ev.Type != "chat.v1.ChatMessage" || ev.Attributes["n"] != fmt.Sprint(i) || time.Since(ev.Time) > time.Minute {
			t.Fatalf("event %d: %+v", i, ev)
		}
		if i == 9 {
			break
		}
	}
	if i != 9 {
		t.Fatalf("got events up to %d, want 5 to 9", i)
	}
}

func TestSubscribeReportsGaps(t *testing.T) {
	h := startServer(t, serverOpts{memory: memory.Options{MaxEvents: 3}})
	c := newClient(t, h.addr)
	var ids []string
	for i := range 6 {
		id, err := c.Publish(ctxT(t), "orders.eu", order(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	var got []string
	var gap *client.GapError
	for ev, err := range c.Subscribe(ctxT(t), []string{"orders.eu"}, client.WithLastEventID(ids[0])) {
		if errors.As(err, &gap) {
			if len(got) > 0 {
				t.Fatal("gap after events, want it first")
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if got = append(got, ev.ID); len(got) == 3 {
			break
		}
	}
	if gap == nil || gap.LastEventID != ids[0] || !strings.Contains(gap.Error(), "missed") || gap.Reason == "" {
		t.Fatalf("gap = %v, want one for %q", gap, ids[0])
	}
	if strings.Join(got, " ") != strings.Join(ids[3:], " ") {
		t.Fatalf("after the gap got %v, want the retained %v", got, ids[3:])
	}
}

// A subscription survives a dropped connection and a slow-consumer cut,
// losing and repeating nothing.
func TestSubscribeResumesAcrossDropsAndCuts(t *testing.T) {
	h := startServer(t, serverOpts{cfg: bridge.Config{QueueSize: 4}})
	px := startProxy(t, h.addr)
	pub := newClient(t, h.addr)
	start, err := pub.Publish(ctxT(t), "chat.rooms.x", &chatv1.ChatMessage{Text: "start"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctxT(t), "chat.rooms.x", &chatv1.ChatMessage{Text: fmt.Sprint(0, strings.Repeat("x", 2000))}); err != nil {
		t.Fatal(err)
	}
	// Fixed 64 KiB flow-control windows, so that the server's sends block
	// while this subscriber does not read.
	sub := newClient(t, px.addr, client.WithDialOptions(grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10)))
	var reasons []codes.Code
	next := 0
	const n = 300
	padding := strings.Repeat("x", 2000)
	for ev, err := range sub.Subscribe(ctxT(t), []string{"chat.rooms.x"}, client.WithLastEventID(start),
		client.OnResubscribe(func(err error, _ time.Duration) { reasons = append(reasons, status.Code(err)) })) {
		if err != nil {
			t.Fatal(err)
		}
		if got := ev.Payload.(*chatv1.ChatMessage).GetText(); got != fmt.Sprint(next, padding) {
			t.Fatalf("got %.10q..., want %d", got, next)
		}
		next++
		switch next {
		case 1:
			// Far more than the queue of 4 while this loop stands still:
			// the server cuts the subscriber.
			for i := 1; i < n; i++ {
				if _, err := pub.Publish(ctxT(t), "chat.rooms.x", &chatv1.ChatMessage{Text: fmt.Sprint(i, padding)}); err != nil {
					t.Fatal(err)
				}
			}
		case n / 2:
			px.sever()
		}
		if next == n {
			break
		}
	}
	if next != n || len(reasons) < 2 {
		t.Fatalf("got %d of %d events, resubscribed after %v; want every event and both a cut and a drop", next, n, reasons)
	}
	if reasons[0] != codes.ResourceExhausted || !containsCode(reasons, codes.Unavailable) {
		t.Fatalf("resubscribed after %v, want RESOURCE_EXHAUSTED then UNAVAILABLE", reasons)
	}
}

func containsCode(cs []codes.Code, c codes.Code) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

func TestSubscribeErrors(t *testing.T) {
	h := startServer(t, serverOpts{})
	c := newClient(t, h.addr)
	n := 0
	for _, err := range c.Subscribe(ctxT(t), []string{"orders", "orders.>.eu"}) {
		n++
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `">" before its last token`) {
			t.Fatalf("err = %v, want INVALID_ARGUMENT naming the pattern", err)
		}
	}
	if n != 1 {
		t.Fatalf("%d values, want exactly the error", n)
	}

	// Unknown payload types arrive as the raw Any.
	id, err := c.Publish(ctxT(t), "orders.eu", order("o-1"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Publish(ctxT(t), "orders.eu", order("o-2"))
	if err != nil {
		t.Fatal(err)
	}
	raw := 0
	for ev, err := range c.Subscribe(ctxT(t), []string{"orders.eu"}, client.WithLastEventID(id), client.WithResolver(new(protoregistry.Types))) {
		if err != nil {
			t.Fatal(err)
		}
		raw++
		a, ok := ev.Payload.(*anypb.Any)
		if !ok || a.GetTypeUrl() != "type.googleapis.com/orders.v1.OrderPlaced" {
			t.Fatalf("payload %T %v, want the raw Any", ev.Payload, ev.Payload)
		}
		var o ordersv1.OrderPlaced
		if err := a.UnmarshalTo(&o); err != nil || o.GetOrderId() != "o-2" {
			t.Fatalf("Any holds %v, %v", &o, err)
		}
		break
	}
	if raw != 1 {
		t.Fatal("no event with an unknown payload type")
	}

	// A closed client ends the subscription instead of retrying forever.
	closed, err := client.New(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	n = 0
	for _, err := range closed.Subscribe(ctxT(t), []string{"orders.eu"}) {
		n++
		if status.Code(err) != codes.Canceled {
			t.Fatalf("subscribe on a closed client: %v, want CANCELED", err)
		}
	}
	if n != 1 {
		t.Fatalf("subscribe on a closed client yielded %d values, want the error", n)
	}
}

// WithSnapshot starts with each topic's latest event, then Synced, then
// live events; deletions arrive as Deleted events; WithFilter keeps only
// what the expression accepts.
func TestSubscribeSnapshotFilterAndDeletion(t *testing.T) {
	h := startServer(t, serverOpts{})
	c := newClient(t, h.addr)
	ctx := ctxT(t)
	for i, room := range []string{"a", "b", "a", "c"} {
		if _, err := c.Publish(ctx, "chat.rooms."+room, &chatv1.ChatMessage{Room: room, Text: fmt.Sprint("m", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var syncedTopics int
	next, stop := iter.Pull2(c.Subscribe(ctx, []string{"chat.rooms.*"},
		client.WithSnapshot(func(topics int, _ string) { syncedTopics = topics }),
		client.WithFilter(`payload.room != "b"`)))
	defer stop()
	var texts []string
	for range 2 {
		ev, err, ok := next()
		if !ok || err != nil {
			t.Fatal(err)
		}
		texts = append(texts, ev.Payload.(*chatv1.ChatMessage).GetText())
	}
	if strings.Join(texts, " ") != "m2 m3" {
		t.Fatalf("snapshot %v, want the latest of a and c (b filtered out)", texts)
	}
	if _, err := c.DeleteTopicState(ctx, "chat.rooms.a"); err != nil {
		t.Fatal(err)
	}
	ev, err, ok := next()
	if !ok || err != nil || !ev.Deleted || ev.Topic != "chat.rooms.a" || ev.Payload != nil {
		t.Fatalf("after DeleteTopicState: %+v %v", ev, err)
	}
	if syncedTopics != 2 {
		t.Fatalf("onSynced got %d topics, want 2", syncedTopics)
	}
}

package bridge_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/bridge"
	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// grpcServer is a real Herald server on 127.0.0.1:0 with the memory broker,
// like startServer's, plus a SubscriberService client. dial tunes the
// client connection (flow-control windows for the slow-consumer test).
type grpcServer struct {
	*bridge.Server
	url    string
	addr   string
	conn   *grpc.ClientConn
	pub    heraldv1.PublisherServiceClient
	sub    heraldv1.SubscriberServiceClient
	broker *memory.Broker
}

func startGRPCServer(t testing.TB, opts serverOpts, dial ...grpc.DialOption) *grpcServer {
	t.Helper()
	s := heraldtest.Start(t, heraldtest.Options{Config: opts.cfg, Memory: opts.memory})
	conn := s.Conn
	if len(dial) > 0 {
		var err error
		dial = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, dial...)
		if conn, err = grpc.NewClient(s.GRPCAddr, dial...); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
	}
	return &grpcServer{
		Server: s.Server,
		url:    s.URL,
		addr:   s.GRPCAddr,
		conn:   conn,
		pub:    heraldv1.NewPublisherServiceClient(conn),
		sub:    heraldv1.NewSubscriberServiceClient(conn),
		broker: s.Broker,
	}
}

func (s *grpcServer) publish(t testing.TB, topic string, msg proto.Message) string {
	t.Helper()
	resp, err := s.pub.Publish(ctxT(t), request(t, topic, msg))
	if err != nil {
		t.Fatalf("publish to %s: %v", topic, err)
	}
	return resp.GetId()
}

// subscribe opens a Subscribe stream that ends with the test.
func (s *grpcServer) subscribe(t testing.TB, req *heraldv1.SubscribeRequest) grpc.ServerStreamingClient[heraldv1.SubscribeResponse] {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxT(t))
	t.Cleanup(cancel)
	st, err := s.sub.Subscribe(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// subscribeLive opens a live Subscribe stream and returns once the server
// has registered it: it resumes after a marker published before, and the
// marker published after it proves the subscription sees live events.
func (s *grpcServer) subscribeLive(t testing.TB, topics ...string) grpc.ServerStreamingClient[heraldv1.SubscribeResponse] {
	t.Helper()
	marker := fmt.Sprint("test.ready.", readyMarkers.Add(1))
	before := s.publish(t, marker, &chatv1.ChatMessage{Text: "before"})
	st := s.subscribe(t, &heraldv1.SubscribeRequest{Topics: append(topics, marker), LastEventId: before})
	after := s.publish(t, marker, &chatv1.ChatMessage{Text: "after"})
	if ev := recvEvent(t, st); ev.GetId() != after {
		t.Fatalf("first event %q, want the marker %q", ev.GetId(), after)
	}
	return st
}

var readyMarkers atomic.Int64

func recv(t testing.TB, st grpc.ServerStreamingClient[heraldv1.SubscribeResponse]) *heraldv1.SubscribeResponse {
	t.Helper()
	resp, err := st.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return resp
}

func recvEvent(t testing.TB, st grpc.ServerStreamingClient[heraldv1.SubscribeResponse]) *heraldv1.Event {
	t.Helper()
	resp := recv(t, st)
	if resp.GetEvent() == nil {
		t.Fatalf("got %v, want an event", resp)
	}
	return resp.GetEvent()
}

// checkGRPCEvent asserts an event's id, topic, type and typed payload.
func checkGRPCEvent(t testing.TB, ev *heraldv1.Event, id, topic, typ string, want proto.Message) {
	t.Helper()
	if ev.GetId() != id || ev.GetTopic() != topic || ev.GetType() != typ {
		t.Errorf("event %q on %q of type %q, want %q on %q of type %q", ev.GetId(), ev.GetTopic(), ev.GetType(), id, topic, typ)
	}
	got, err := ev.GetPayload().UnmarshalNew()
	if err != nil {
		t.Fatalf("payload %v: %v", ev.GetPayload(), err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("payload = %v, want %v", got, want)
	}
	if ts := ev.GetTime().AsTime(); ts.IsZero() || time.Since(ts) > time.Minute || time.Since(ts) < 0 {
		t.Errorf("time = %v, want the time of publishing", ts)
	}
}

func TestSubscribeTopicsAndPatterns(t *testing.T) {
	s := startGRPCServer(t, serverOpts{cfg: bridge.Config{HeartbeatInterval: 2 * time.Millisecond}})
	st := s.subscribeLive(t, "orders.*", "chat.rooms.lobby", "orders.eu", "monitoring.>", "orders.*")

	// Heartbeats are queued to every idle subscriber on one schedule: once
	// an SSE stream has seen one, the gRPC stream had some queued too, and
	// must not turn them into messages.
	resp, err := http.Get(s.url + "/v1/events?topic=quiet")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for r := bufio.NewReader(resp.Body); ; {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, ":") {
			break
		}
	}

	msg := &chatv1.ChatMessage{Room: "lobby", Text: "héllo 👋"}
	pubs := []struct {
		topic string
		want  bool
	}{
		{"orders.eu", true}, // matches two patterns: delivered once
		{"orders", false},
		{"orders.eu.north", false},
		{"chat.rooms.lobby", true},
		{"chat.rooms.dev", false},
		{"monitoring", false},
		{"monitoring.eu.game-1", true},
		{"monitoring.us", true},
	}
	type want struct{ id, topic string }
	var wants []want
	for _, p := range pubs {
		id := s.publish(t, p.topic, msg)
		if p.want {
			wants = append(wants, want{id, p.topic})
		}
	}
	for _, w := range wants {
		checkGRPCEvent(t, recvEvent(t, st), w.id, w.topic, "chat.v1.ChatMessage", msg)
	}

	// Type and attributes travel as published.
	req := request(t, "orders.us", msg)
	req.Type = "chat-line"
	req.Attributes = map[string]string{"source": "test", "ünï": "✓"}
	r, err := s.pub.Publish(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	ev := recvEvent(t, st)
	checkGRPCEvent(t, ev, r.GetId(), "orders.us", "chat-line", msg)
	if got := ev.GetAttributes(); len(got) != 2 || got["source"] != "test" || got["ünï"] != "✓" {
		t.Errorf("attributes = %v", got)
	}

	hc, err := healthpb.NewHealthClient(s.conn).Check(ctxT(t), &healthpb.HealthCheckRequest{Service: "herald.v1.SubscriberService"})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health of herald.v1.SubscriberService = %v, %v; want SERVING", hc, err)
	}
}

func TestSubscribeResumesExactlyAfterTheID(t *testing.T) {
	s := startGRPCServer(t, serverOpts{})
	topics := []string{"chat.rooms.a", "chat.rooms.b", "orders.eu"}
	var ids, topicOf []string
	msg := func(i int) *chatv1.ChatMessage { return &chatv1.ChatMessage{Text: fmt.Sprint("m", i)} }
	for i := range 12 {
		topic := topics[i%len(topics)]
		ids = append(ids, s.publish(t, topic, msg(i)))
		topicOf = append(topicOf, topic)
	}
	cases := []struct {
		name   string
		topics []string
		after  int
		match  func(string) bool
	}{
		{"one topic", []string{"chat.rooms.a"}, 3, func(s string) bool { return s == "chat.rooms.a" }},
		{"several topics", []string{"chat.rooms.a", "orders.eu"}, 4, func(s string) bool { return s != "chat.rooms.b" }},
		{"pattern", []string{"chat.>"}, 1, func(s string) bool { return strings.HasPrefix(s, "chat.") }},
		{"after the last", []string{"chat.>", "orders.*"}, 11, func(string) bool { return true }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := s.subscribe(t, &heraldv1.SubscribeRequest{Topics: tc.topics, LastEventId: ids[tc.after]})
			for i := tc.after + 1; i < len(ids); i++ {
				if !tc.match(topicOf[i]) {
					continue
				}
				checkGRPCEvent(t, recvEvent(t, st), ids[i], topicOf[i], "chat.v1.ChatMessage", msg(i))
			}
			// Then live events, nothing repeated in between.
			live := s.publish(t, "chat.rooms.a", msg(len(ids)))
			ids, topicOf = append(ids, live), append(topicOf, "chat.rooms.a")
			if ev := recvEvent(t, st); ev.GetId() != live {
				t.Fatalf("after the replay got %q, want the live event %q", ev.GetId(), live)
			}
		})
	}
}

func TestSubscribeBeyondRetentionSendsAGap(t *testing.T) {
	s := startGRPCServer(t, serverOpts{memory: memory.Options{MaxEvents: 3}})
	var ids []string
	for i := range 6 {
		ids = append(ids, s.publish(t, "orders.eu", order(fmt.Sprint("o-", i))))
	}
	for _, tc := range []struct{ name, lastID, reason string }{
		{"evicted", ids[0], "no longer reaches back"},
		{"garbled", "nonsense id ☃", "not issued by this server"},
		{"another epoch", "zzzzzzzz-3", "earlier history"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := s.subscribe(t, &heraldv1.SubscribeRequest{Topics: []string{"orders.eu"}, LastEventId: tc.lastID})
			gap := recv(t, st).GetGap()
			if gap.GetLastEventId() != tc.lastID || !strings.Contains(gap.GetReason(), tc.reason) {
				t.Fatalf("first message gap = %v, want a gap for %q saying %q", gap, tc.lastID, tc.reason)
			}
			for i, id := range ids[3:] {
				checkGRPCEvent(t, recvEvent(t, st), id, "orders.eu", "orders.v1.OrderPlaced", order(fmt.Sprint("o-", i+3)))
			}
		})
	}
	// Resuming within the retained history is no gap.
	st := s.subscribe(t, &heraldv1.SubscribeRequest{Topics: []string{"orders.eu"}, LastEventId: ids[3]})
	if resp := recv(t, st); resp.GetEvent().GetId() != ids[4] {
		t.Fatalf("got %v, want event %q with no gap", resp, ids[4])
	}
}

func TestSubscribeRefusesBadTopics(t *testing.T) {
	s := startGRPCServer(t, serverOpts{})
	many := make([]string, 65)
	for i := range many {
		many[i] = fmt.Sprint("t", i)
	}
	for _, tc := range []struct {
		name   string
		topics []string
		want   string
	}{
		{"none", nil, "no topic"},
		{"empty token", []string{"orders", "orders..eu"}, `"orders..eu" has an empty token`},
		{"> not last", []string{"orders.>.eu"}, `">" before its last token`},
		{"bad character", []string{"orders/eu"}, `"/"`},
		{"empty", []string{""}, "topic is empty"},
		{"too many", many, "65 topics, more than the limit of 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := s.subscribe(t, &heraldv1.SubscribeRequest{Topics: tc.topics})
			_, err := st.Recv()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Fatalf("err = %v, want INVALID_ARGUMENT mentioning %q", err, tc.want)
			}
		})
	}

	// The limit is the server's, as for SSE.
	few := startGRPCServer(t, serverOpts{cfg: bridge.Config{MaxTopicsPerSubscription: 2}})
	_, err := few.subscribe(t, &heraldv1.SubscribeRequest{Topics: []string{"a", "b", "c"}}).Recv()
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "3 topics, more than the limit of 2") {
		t.Fatalf("3 topics with a limit of 2: %v", err)
	}
	few.subscribeLive(t, "a") // the marker topic makes 2
}

// A consumer that falls behind is cut off with RESOURCE_EXHAUSTED instead
// of slowing anyone down, and loses nothing when it resumes from the last
// id it received.
func TestSubscribeSlowConsumerIsCutAndResumes(t *testing.T) {
	// Fixed 64 KiB flow-control windows (no BDP growth), so the server's
	// sends block soon while the client reads nothing.
	s := startGRPCServer(t, serverOpts{cfg: bridge.Config{QueueSize: 8}},
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	stalled := s.subscribeLive(t, "chat.rooms.big")
	healthy := s.subscribeLive(t, "chat.rooms.big")

	const n = 200
	big := func(i int) *chatv1.ChatMessage {
		return &chatv1.ChatMessage{Text: fmt.Sprintf("%03d %s", i, strings.Repeat("é", 15000))}
	}
	var ids []string
	for i := range n {
		ids = append(ids, s.publish(t, "chat.rooms.big", big(i)))
		// The healthy subscriber keeps up, so it is never dropped.
		checkGRPCEvent(t, recvEvent(t, healthy), ids[i], "chat.rooms.big", "chat.v1.ChatMessage", big(i))
	}

	// The stalled one now reads: a prefix of the events, then the cut.
	got := 0
	var err error
	for {
		var resp *heraldv1.SubscribeResponse
		resp, err = stalled.Recv()
		if err != nil {
			break
		}
		if id := resp.GetEvent().GetId(); got >= n || id != ids[got] {
			t.Fatalf("stalled subscriber got %q as event %d, want %q", id, got, ids[got])
		}
		got++
	}
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "last_event_id") {
		t.Fatalf("stream ended with %v, want RESOURCE_EXHAUSTED telling to resume with last_event_id", err)
	}
	if got == 0 || got >= n {
		t.Fatalf("the slow consumer got %d of %d events before the cut, want some but not all", got, n)
	}

	resumed := s.subscribe(t, &heraldv1.SubscribeRequest{Topics: []string{"chat.rooms.big"}, LastEventId: ids[got-1]})
	for i := got; i < n; i++ {
		checkGRPCEvent(t, recvEvent(t, resumed), ids[i], "chat.rooms.big", "chat.v1.ChatMessage", big(i))
	}
}

func TestSubscribeEndsWithUnavailableOnShutdown(t *testing.T) {
	s := startGRPCServer(t, serverOpts{})
	st := s.subscribeLive(t, "orders.eu")
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		errc <- s.Shutdown(ctx)
	}()
	_, err := st.Recv()
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "last_event_id") {
		t.Fatalf("stream ended with %v, want UNAVAILABLE telling to resume", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("shutdown with an open Subscribe stream: %v", err)
	}
	late, err := s.sub.Subscribe(ctxT(t), &heraldv1.SubscribeRequest{Topics: []string{"orders.eu"}})
	if err == nil {
		_, err = late.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("subscribe after shutdown: %v, want UNAVAILABLE", err)
	}
}

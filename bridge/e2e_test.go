package bridge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/heraldhq/herald/bridge"
	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/schema"
)

// testServer is a real Herald server on 127.0.0.1:0 with the memory broker.
type testServer struct {
	*bridge.Server
	url      string // http://127.0.0.1:port
	client   heraldv1.PublisherServiceClient
	schemas  heraldv1.SchemaServiceClient
	conn     *grpc.ClientConn
	grpcAddr string
	broker   *memory.Broker
}

type serverOpts struct {
	cfg    bridge.Config
	memory memory.Options
}

func startServer(t testing.TB, opts serverOpts) *testServer {
	t.Helper()
	s := heraldtest.Start(t, heraldtest.Options{Config: opts.cfg, Memory: opts.memory})
	return &testServer{Server: s.Server, url: s.URL, client: heraldv1.NewPublisherServiceClient(s.Conn), schemas: heraldv1.NewSchemaServiceClient(s.Conn), conn: s.Conn, grpcAddr: s.GRPCAddr, broker: s.Broker}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func order(id string) *ordersv1.OrderPlaced {
	return &ordersv1.OrderPlaced{OrderId: id, Customer: "Zoë 山田", TotalCents: 4200, Currency: "EUR", Channel: ordersv1.Channel_CHANNEL_WEB}
}

func request(t testing.TB, topic string, msg proto.Message) *heraldv1.PublishRequest {
	t.Helper()
	payload, err := anypb.New(msg)
	if err != nil {
		t.Fatal(err)
	}
	return &heraldv1.PublishRequest{Topic: topic, Payload: payload}
}

func (s *testServer) publish(t testing.TB, topic string, msg proto.Message) string {
	t.Helper()
	resp, err := s.client.Publish(ctxT(t), request(t, topic, msg))
	if err != nil {
		t.Fatalf("publish to %s: %v", topic, err)
	}
	return resp.GetId()
}

// stream is an SSE subscription read by go-sse's parser, an implementation
// independent of Herald's writer.
type stream struct {
	resp   *http.Response
	events chan gosse.Event
	cancel context.CancelFunc
	done   chan error
}

func (s *testServer) subscribe(t testing.TB, query string, header http.Header) *stream {
	t.Helper()
	return s.subscribeVia(t, http.DefaultClient, query, header)
}

// subscribeVia subscribes with the given client (HTTP/2, say).
func (s *testServer) subscribeVia(t testing.TB, client *http.Client, query string, header http.Header) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/v1/events?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	st := &stream{resp: resp, events: make(chan gosse.Event, 10000), cancel: cancel, done: make(chan error, 1)}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		return st
	}
	go func() {
		defer close(st.events)
		for ev, err := range gosse.Read(resp.Body, &gosse.ReadConfig{MaxEventSize: 4 << 20}) {
			if err != nil {
				st.done <- err
				return
			}
			st.events <- ev
		}
		st.done <- nil
	}()
	return st
}

func (st *stream) next(t testing.TB) gosse.Event {
	t.Helper()
	select {
	case ev, ok := <-st.events:
		if !ok {
			t.Fatal("stream ended, want another event")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return gosse.Event{}
}

// checkEvent asserts an event's id, type, and that its data is the JSON
// form of want.
func checkEvent(t testing.TB, ev gosse.Event, id, typ string, want proto.Message) {
	t.Helper()
	if ev.LastEventID != id {
		t.Errorf("id = %q, want %q", ev.LastEventID, id)
	}
	if ev.Type != typ {
		t.Errorf("event = %q, want %q", ev.Type, typ)
	}
	if strings.ContainsAny(ev.Data, "\r\n") {
		t.Errorf("data spans several lines: %q", ev.Data)
	}
	got := want.ProtoReflect().New().Interface()
	if err := protojson.Unmarshal([]byte(ev.Data), got); err != nil {
		t.Fatalf("data %q is not the JSON of %T: %v", ev.Data, want, err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("data = %s, want %v", ev.Data, want)
	}
}

func TestPublishOverEveryTransportReachesSSE(t *testing.T) {
	s := startServer(t, serverOpts{})
	st := s.subscribe(t, "topic=orders.eu", nil)
	if st.resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", st.resp.StatusCode)
	}

	// Unary gRPC.
	o1 := order("o-1")
	id1 := s.publish(t, "orders.eu", o1)
	checkEvent(t, st.next(t), id1, "orders.v1.OrderPlaced", o1)

	// PublishStream: responses in order, a bad event answered with an
	// error without ending the stream.
	ps, err := s.client.PublishStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	o2, o3 := order("o-2"), order("o-3")
	bad := request(t, "orders.eu", o2)
	bad.Payload.TypeUrl = "type.googleapis.com/nobody.v1.Knows"
	custom := request(t, "orders.eu", o3)
	custom.Type = "order-placed"
	for _, r := range []*heraldv1.PublishRequest{request(t, "orders.eu", o2), bad, custom} {
		if err := ps.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	var resps []*heraldv1.PublishResponse
	for range 3 {
		r, err := ps.Recv()
		if err != nil {
			t.Fatal(err)
		}
		resps = append(resps, r)
	}
	if resps[0].GetId() == "" || resps[0].GetError() != nil || resps[2].GetId() == "" {
		t.Fatalf("stream responses = %v, want ids for the 1st and 3rd", resps)
	}
	if e := resps[1].GetError(); e == nil || codes.Code(e.GetCode()) != codes.InvalidArgument || !strings.Contains(e.GetMessage(), "nobody.v1.Knows") {
		t.Fatalf("bad event's response = %v, want INVALID_ARGUMENT naming the type", resps[1])
	}
	if err := ps.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Recv(); err != io.EOF {
		t.Fatalf("stream end = %v, want EOF", err)
	}
	checkEvent(t, st.next(t), resps[0].GetId(), "orders.v1.OrderPlaced", o2)
	checkEvent(t, st.next(t), resps[2].GetId(), "order-placed", o3)

	// REST through grpc-gateway, the payload in protojson's Any form.
	body := `{"payload":{"@type":"type.googleapis.com/orders.v1.OrderPlaced","orderId":"o-4","customer":"Zoë 山田","totalCents":"4200","currency":"EUR","channel":"CHANNEL_WEB"},"attributes":{"source":"curl"}}`
	resp, err := http.Post(s.url+"/v1/topics/orders.eu/events", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.ID == "" {
		t.Fatalf("REST publish: status %d, id %q, err %v", resp.StatusCode, out.ID, err)
	}
	checkEvent(t, st.next(t), out.ID, "orders.v1.OrderPlaced", order("o-4"))
}

func TestStreamHeadersComeFirst(t *testing.T) {
	s := startServer(t, serverOpts{cfg: bridge.Config{RetryInterval: 1500 * time.Millisecond}})
	resp, err := http.Get(s.url + "/v1/events?topic=quiet")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
		"Content-Length":    "",
		"Content-Encoding":  "",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	// No event was published: the retry hint must arrive anyway, flushed
	// with the headers.
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "retry: 1500\n" {
		t.Fatalf("first line = %q, %v; want the retry hint", line, err)
	}
}

func TestHeartbeat(t *testing.T) {
	s := startServer(t, serverOpts{cfg: bridge.Config{HeartbeatInterval: 20 * time.Millisecond}})
	resp, err := http.Get(s.url + "/v1/events?topic=quiet")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for range 3 { // retry, blank, then comments
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, ":") {
			return
		}
	}
	t.Fatal("no comment line on an idle stream")
}

func TestPatternsAndMultipleTopics(t *testing.T) {
	s := startServer(t, serverOpts{})
	st := s.subscribe(t, "topic=orders.*&topic=chat.rooms.lobby&topic=orders.eu&topic=monitoring.>", nil)
	msg := &chatv1.ChatMessage{Room: "lobby", Text: "héllo 👋"}
	type pub struct {
		topic string
		want  bool
	}
	pubs := []pub{
		{"orders.eu", true}, // matches two patterns: delivered once
		{"orders", false},
		{"orders.eu.north", false},
		{"chat.rooms.lobby", true},
		{"chat.rooms.dev", false},
		{"monitoring", false},
		{"monitoring.eu.game-1", true},
		{"monitoring.us", true},
	}
	var want []string
	for _, p := range pubs {
		id := s.publish(t, p.topic, msg)
		if p.want {
			want = append(want, id)
		}
	}
	for _, id := range want {
		checkEvent(t, st.next(t), id, "chat.v1.ChatMessage", msg)
	}
	// A marker proves nothing else was queued before it.
	marker := s.publish(t, "orders.us", msg)
	if ev := st.next(t); ev.LastEventID != marker {
		t.Fatalf("got event %q, want only the matching ones then %q", ev.LastEventID, marker)
	}
}

func TestResumeReplaysExactlyTheMissedEvents(t *testing.T) {
	s := startServer(t, serverOpts{})
	topics := []string{"chat.rooms.a", "chat.rooms.b", "orders.eu"}
	var ids []string
	var topicOf []string
	for i := range 12 {
		topic := topics[i%len(topics)]
		ids = append(ids, s.publish(t, topic, &chatv1.ChatMessage{Text: fmt.Sprint("m", i)}))
		topicOf = append(topicOf, topic)
	}
	cases := []struct {
		name   string
		query  string
		header string
		after  int // index of the Last-Event-ID in ids
		match  func(topic string) bool
	}{
		{"one topic, header", "topic=chat.rooms.a", ids[3], 3, func(s string) bool { return s == "chat.rooms.a" }},
		{"several topics, header", "topic=chat.rooms.a&topic=orders.eu", ids[4], 4, func(s string) bool { return s != "chat.rooms.b" }},
		{"pattern, query parameter", "topic=chat.>&last_event_id=" + url.QueryEscape(ids[1]), "", 1, func(s string) bool { return strings.HasPrefix(s, "chat.") }},
		{"header wins over query", "topic=chat.>&last_event_id=" + url.QueryEscape(ids[0]), ids[7], 7, func(s string) bool { return strings.HasPrefix(s, "chat.") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.header != "" {
				h.Set("Last-Event-ID", tc.header)
			}
			st := s.subscribe(t, tc.query, h)
			for i := tc.after + 1; i < len(ids); i++ {
				if !tc.match(topicOf[i]) {
					continue
				}
				ev := st.next(t)
				if ev.LastEventID != ids[i] || ev.Type != "chat.v1.ChatMessage" {
					t.Fatalf("replayed %q (%s), want %q", ev.LastEventID, ev.Type, ids[i])
				}
			}
			// Then live events, with nothing repeated in between.
			live := s.publish(t, "chat.rooms.a", &chatv1.ChatMessage{Text: "live"})
			ids, topicOf = append(ids, live), append(topicOf, "chat.rooms.a")
			if ev := st.next(t); ev.LastEventID != live {
				t.Fatalf("after the replay got %q, want the live event %q", ev.LastEventID, live)
			}
		})
	}
}

func TestResumeBeyondRetentionSaysSo(t *testing.T) {
	s := startServer(t, serverOpts{memory: memory.Options{MaxEvents: 3}})
	var ids []string
	for i := range 6 {
		ids = append(ids, s.publish(t, "orders.eu", order(fmt.Sprint("o-", i))))
	}
	for _, tc := range []struct{ name, lastID string }{
		{"evicted", ids[0]},
		{"garbled", "nonsense id ☃"},
		{"another epoch", "zzzzzzzz-3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Last-Event-Id": {tc.lastID}}
			st := s.subscribe(t, "topic=orders.eu", h)
			if st.resp.StatusCode != 200 {
				t.Fatalf("status = %d, want 200: a bad Last-Event-ID is never an error", st.resp.StatusCode)
			}
			gap := st.next(t)
			if gap.Type != bridge.GapEventType {
				t.Fatalf("first event = %q, want %s", gap.Type, bridge.GapEventType)
			}
			var body struct{ LastEventID, Reason string }
			if err := json.Unmarshal([]byte(gap.Data), &body); err != nil || body.LastEventID != tc.lastID || body.Reason == "" {
				t.Fatalf("gap data = %s (%v)", gap.Data, err)
			}
			for _, id := range ids[3:] {
				if ev := st.next(t); ev.LastEventID != id {
					t.Fatalf("replayed %q, want %q", ev.LastEventID, id)
				}
			}
		})
	}
	// Resuming within the retained history is no gap.
	st := s.subscribe(t, "topic=orders.eu", http.Header{"Last-Event-Id": {ids[3]}})
	if ev := st.next(t); ev.LastEventID != ids[4] || ev.Type == bridge.GapEventType {
		t.Fatalf("got %q %q, want %q with no gap", ev.Type, ev.LastEventID, ids[4])
	}
}

func TestIdempotentPublish(t *testing.T) {
	s := startServer(t, serverOpts{})
	st := s.subscribe(t, "topic=orders.eu", nil)
	req := request(t, "orders.eu", order("o-1"))
	req.IdempotencyKey = "order-o-1"
	first, err := s.client.Publish(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.client.Publish(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetId() != first.GetId() || !again.GetDuplicate() || first.GetDuplicate() {
		t.Fatalf("retry = %v, first = %v; want the same id marked duplicate", again, first)
	}
	marker := s.publish(t, "orders.eu", order("o-2"))
	if ev := st.next(t); ev.LastEventID != first.GetId() {
		t.Fatalf("got %q", ev.LastEventID)
	}
	if ev := st.next(t); ev.LastEventID != marker {
		t.Fatalf("got %q after the first event, want %q: the retry must not be delivered", ev.LastEventID, marker)
	}
}

func TestBadInputGetsAClearError(t *testing.T) {
	s := startServer(t, serverOpts{cfg: bridge.Config{MaxEventBytes: 4096}})
	good := func() *heraldv1.PublishRequest { return request(t, "orders.eu", order("o-1")) }
	cases := []struct {
		name string
		req  func() *heraldv1.PublishRequest
		want string
	}{
		{"bad topic", func() *heraldv1.PublishRequest { r := good(); r.Topic = "orders..eu"; return r }, "empty token"},
		{"wildcard topic", func() *heraldv1.PublishRequest { r := good(); r.Topic = "orders.*"; return r }, `"*"`},
		{"no payload", func() *heraldv1.PublishRequest { r := good(); r.Payload = nil; return r }, "payload is missing"},
		{"unknown type", func() *heraldv1.PublishRequest {
			r := good()
			r.Payload.TypeUrl = "type.googleapis.com/acme.v1.Unknown"
			return r
		}, "acme.v1.Unknown"},
		{"bytes that do not parse", func() *heraldv1.PublishRequest {
			r := good()
			r.Payload.Value = []byte{0x0a, 0xff, 0x01}
			return r
		}, "does not parse as orders.v1.OrderPlaced"},
		{"event type with a newline", func() *heraldv1.PublishRequest { r := good(); r.Type = "a\ndata: x"; return r }, "type"},
		{"reserved type", func() *heraldv1.PublishRequest { r := good(); r.Type = "herald.gap"; return r }, "reserved"},
		{"too large", func() *heraldv1.PublishRequest {
			r := good()
			p, _ := anypb.New(&chatv1.ChatMessage{Text: strings.Repeat("x", 5000)})
			r.Payload = p
			return r
		}, "over the limit of 4096 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.client.Publish(ctxT(t), tc.req())
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Fatalf("err = %v, want INVALID_ARGUMENT mentioning %q", err, tc.want)
			}
		})
	}

	rest := []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"REST unknown type", "POST", "/v1/topics/orders.eu/events", `{"payload":{"@type":"type.googleapis.com/acme.v1.Unknown"}}`, 400, "acme.v1.Unknown"},
		{"REST bad topic", "POST", "/v1/topics/orders..eu/events", `{"payload":{"@type":"type.googleapis.com/google.protobuf.Empty"}}`, 400, "empty token"},
		{"REST malformed JSON", "POST", "/v1/topics/orders.eu/events", `{"payload":`, 400, ""},
		{"SSE no topic", "GET", "/v1/events", "", 400, "no topic"},
		{"SSE bad pattern", "GET", "/v1/events?topic=orders.%3E.eu", "", 400, `">"`},
		{"SSE unknown parameter", "GET", "/v1/events?topic=a&topics=b", "", 400, `"topics"`},
		{"unknown route", "GET", "/v2/nothing", "", 404, "/v2/nothing"},
	}
	for _, tc := range rest {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, s.url+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Code    int
				Message string
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tc.status || !strings.Contains(body.Message, tc.want) {
				t.Fatalf("%d %q, want %d mentioning %q", resp.StatusCode, body.Message, tc.status, tc.want)
			}
		})
	}
}

// A subscriber that stops reading must not delay the publisher or the
// other subscribers; it is cut off once its queue overflows.
func TestStalledSubscriberDoesNotDelayOthers(t *testing.T) {
	s := startServer(t, serverOpts{cfg: bridge.Config{QueueSize: 8, WriteTimeout: 500 * time.Millisecond}})
	// The stalled client: sends its request, reads the headers, then
	// never reads again.
	stalled, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	fmt.Fprintf(stalled, "GET /v1/events?topic=orders.eu HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := bufio.NewReader(stalled).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	healthy := s.subscribe(t, "topic=orders.eu", nil)

	big := &chatv1.ChatMessage{Text: strings.Repeat("é", 30000)}
	const n = 200
	var ids []string
	for range n {
		ids = append(ids, s.publish(t, "orders.eu", big))
	}
	for _, id := range ids {
		if ev := healthy.next(t); ev.LastEventID != id {
			t.Fatalf("healthy subscriber got %q, want %q", ev.LastEventID, id)
		}
	}
	// The stalled one is dropped: its connection ends.
	_ = stalled.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.Copy(io.Discard, stalled); err != nil {
		t.Fatalf("stalled connection was not closed by the server: %v", err)
	}
}

func TestShutdownEndsStreamsPromptly(t *testing.T) {
	s := startServer(t, serverOpts{})
	resp, err := http.Get(s.url + "/v1/events?topic=orders.eu")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with an open stream: %v", err)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("stream did not end cleanly: %v", err)
	}
	if !strings.Contains(string(rest), "retry: ") {
		t.Fatalf("stream ended without a reconnect hint: %q", rest)
	}
	if _, err := http.Get(s.url + "/readyz"); err == nil {
		t.Fatal("server still answers after shutdown")
	}
	_, err = s.client.Publish(ctxT(t), request(t, "orders.eu", order("late")))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("publish after shutdown: %v, want UNAVAILABLE", err)
	}
}

func TestShutdownEndsPublishStreams(t *testing.T) {
	s := startServer(t, serverOpts{})
	ps, err := s.client.PublishStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.Send(request(t, "orders.eu", order("o-1"))); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Recv(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	}()
	// The stream in flight ends at its next message, with an answer for
	// what it sent or UNAVAILABLE, never a hang.
	for i := 0; ; i++ {
		if err := ps.Send(request(t, "orders.eu", order("o-2"))); err != nil {
			break
		}
		if _, err := ps.Recv(); err != nil {
			if c := status.Code(err); c != codes.Unavailable && !errors.Is(err, io.EOF) {
				t.Fatalf("stream ended with %v, want UNAVAILABLE", err)
			}
			break
		}
		if i > 1000 {
			t.Fatal("publish stream still open during shutdown")
		}
	}
	wg.Wait()
}

func TestHealthAndMetrics(t *testing.T) {
	page := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("a page with an EventSource")) })
	s := startServer(t, serverOpts{cfg: bridge.Config{Pages: map[string]http.Handler{"GET /{$}": page}}})
	s.publish(t, "orders.eu", order("o-1"))
	for path, want := range map[string]string{
		"/healthz":         "ok",
		"/readyz":          "ready",
		"/metrics":         `herald_publish_total{result="ok",transport="grpc"} 1`,
		"/v1/openapi.json": `"/v1/topics/{topic}/events"`,
		"/":                "EventSource",
	} {
		resp, err := http.Get(s.url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
}

// Without pages, nothing is served at /: the demo page is cmd/herald's.
func TestNoPageWithoutPages(t *testing.T) {
	s := startServer(t, serverOpts{cfg: bridge.Config{Pages: map[string]http.Handler{}}})
	resp, err := http.Get(s.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "no route for GET /") {
		t.Fatalf("GET / without pages: %d %s, want a 404 naming the route", resp.StatusCode, body)
	}
}

func TestH2C(t *testing.T) {
	s := startServer(t, serverOpts{})
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	resp, err := client.Get(s.url + "/v1/events?topic=orders.eu")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
	events := make(chan gosse.Event, 1)
	go func() {
		for ev, err := range gosse.Read(resp.Body, nil) {
			if err != nil {
				return
			}
			events <- ev
		}
	}()
	msg := &structpb.Struct{Fields: map[string]*structpb.Value{"players": structpb.NewNumberValue(42)}}
	id := s.publish(t, "orders.eu", msg)
	select {
	case ev := <-events:
		if ev.LastEventID != id || ev.Data != `{"players":42}` {
			t.Fatalf("got %q %q", ev.LastEventID, ev.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event over h2c")
	}
}

// panickyAuth allows everyone, and panics for the token "boom".
type panickyAuth struct{}

func (panickyAuth) Authenticate(ctx context.Context, c auth.Credentials) (auth.Permissions, error) {
	if c.Token == "boom" {
		panic("authenticator failed")
	}
	return auth.Dev().Authenticate(ctx, c)
}

// TestH2CStreamStartPanicStaysInItsRequest: an HTTP/2 stream starts on a
// goroutine of its own (idle memory); a panic there must end that request
// only, as net/http does for a handler's panic, not the process.
func TestH2CStreamStartPanicStaysInItsRequest(t *testing.T) {
	s := startServer(t, serverOpts{cfg: bridge.Config{Auth: panickyAuth{}}})
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	get := func(token string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, s.url+"/v1/events?topic=orders.eu", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		return client.Do(req)
	}
	if resp, err := get("boom"); err == nil {
		resp.Body.Close()
		t.Fatalf("a stream whose start panicked answered %s, want the stream reset", resp.Status)
	}
	resp, err := get("fine")
	if err != nil {
		t.Fatalf("after a panicking start, the next stream: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("after a panicking start, the next stream got %s over %s, want 200 over HTTP/2", resp.Status, resp.Proto)
	}
}

func TestCORS(t *testing.T) {
	exact := startServer(t, serverOpts{cfg: bridge.Config{CORSOrigins: []string{"https://app.example.com"}}})
	anyOrigin := startServer(t, serverOpts{cfg: bridge.Config{CORSOrigins: []string{"*"}}})
	none := startServer(t, serverOpts{})
	cases := []struct {
		name        string
		srv         *testServer
		method      string
		origin      string
		wantOrigin  string
		wantCreds   string
		wantMethods bool
	}{
		{"allowed origin", exact, "GET", "https://app.example.com", "https://app.example.com", "true", false},
		{"other origin", exact, "GET", "https://evil.example", "", "", false},
		{"preflight", exact, "OPTIONS", "https://app.example.com", "https://app.example.com", "true", true},
		{"preflight other origin", exact, "OPTIONS", "https://evil.example", "", "", false},
		{"any origin, no credentials", anyOrigin, "GET", "https://evil.example", "*", "", false},
		{"not configured", none, "GET", "https://app.example.com", "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, tc.method, tc.srv.url+"/v1/events?topic=a", nil)
			req.Header.Set("Origin", tc.origin)
			if tc.method == "OPTIONS" {
				req.Header.Set("Access-Control-Request-Method", "GET")
				req.Header.Set("Access-Control-Request-Headers", "last-event-id")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			h := resp.Header
			if got := h.Get("Access-Control-Allow-Origin"); got != tc.wantOrigin {
				t.Errorf("Allow-Origin = %q, want %q", got, tc.wantOrigin)
			}
			if got := h.Get("Access-Control-Allow-Credentials"); got != tc.wantCreds {
				t.Errorf("Allow-Credentials = %q, want %q", got, tc.wantCreds)
			}
			if tc.wantMethods {
				if resp.StatusCode/100 != 2 || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "GET") ||
					!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "last-event-id") {
					t.Errorf("preflight: %d, methods %q, headers %q", resp.StatusCode, h.Get("Access-Control-Allow-Methods"), h.Get("Access-Control-Allow-Headers"))
				}
			}
		})
	}
	types, _ := schema.NewBuiltin()
	for _, bad := range [][]string{{"*", "https://a.example"}, {"app.example.com"}, {"https://a.example/path"}} {
		if _, err := bridge.New(bridge.Config{Broker: exact.broker, Types: types, CORSOrigins: bad}); err == nil {
			t.Errorf("CORSOrigins %q accepted", bad)
		}
	}
}

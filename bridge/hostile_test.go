package bridge_test

// Hostile input: each test here is an attack that once cost Herald more
// than the attacker, and checks that it is now refused cheaply, with the
// right status and a message naming the problem, that nothing was
// published, and that the server still serves.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/typepb"

	"github.com/heraldhq/herald/bridge"
	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/memory"
)

// rawRequest writes head (a request line and headers, without the blank
// line) and then body to a new connection, and returns the connection and
// a reader of its responses.
func rawRequest(t *testing.T, url, head, body string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, head+"\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// readResponse reads one response, failing the test if none comes within
// a generous bound (a server that waits for the body never answers).
func readResponse(t *testing.T, conn net.Conn, r *bufio.Reader) (*http.Response, string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp, string(b)
}

// nestedAny wraps a Struct in n levels of google.protobuf.Any.
func nestedAny(t testing.TB, n int) *anypb.Any {
	t.Helper()
	inner, err := anypb.New(&structpb.Struct{Fields: map[string]*structpb.Value{"x": structpb.NewStringValue("y")}})
	if err != nil {
		t.Fatal(err)
	}
	for range n - 1 {
		if inner, err = anypb.New(inner); err != nil {
			t.Fatal(err)
		}
	}
	return inner
}

// nestedAnyJSON is nestedAny as protojson writes it.
func nestedAnyJSON(n int) string {
	s := `{"@type":"type.googleapis.com/google.protobuf.Struct","value":{"x":"y"}}`
	for range n - 1 {
		s = `{"@type":"type.googleapis.com/google.protobuf.Any","value":` + s + `}`
	}
	return s
}

// Finding 1: a REST publish is authenticated before its body is read. The
// request here announces a 300 KB body and sends none of it: the 401 must
// come anyway, and at once, with a proper challenge.
func TestRESTPublishIsRefusedBeforeItsBodyIsRead(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	s := startAuthServer(t, k, bridge.Config{}, nil)
	conn, r := rawRequest(t, s.url, "POST /v1/topics/orders.eu/events HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: 300000", `{"payload":`)
	resp, body := readResponse(t, conn, r)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "publishing needs a token") {
		t.Fatalf("unauthenticated publish with its body unsent: %d %s, want 401 at once", resp.StatusCode, body)
	}
	if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="herald"` {
		t.Fatalf("WWW-Authenticate = %q, want the RFC 6750 challenge", got)
	}

	// A token that does not allow the topic: 403, also before the body.
	tok := k.hs(t, claims{pub: []string{"sandbox.>"}})
	conn, r = rawRequest(t, s.url, "POST /v1/topics/orders.eu/events HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer "+tok+"\r\nContent-Length: 300000", `{`)
	if resp, body := readResponse(t, conn, r); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("publish to a topic the token does not allow, body unsent: %d %s, want 403 at once", resp.StatusCode, body)
	}
}

// Finding 8: every 401 carries WWW-Authenticate: Bearer realm="herald",
// with error="invalid_token" when a token was presented; never the error
// message as the challenge.
func TestUnauthorizedAnswersCarryABearerChallenge(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	s := startAuthServer(t, k, bridge.Config{}, nil)
	for _, tc := range []struct {
		name, method, path, token, want string
	}{
		{"REST publish, no token", http.MethodPost, "/v1/topics/orders.eu/events", "", `Bearer realm="herald"`},
		{"REST publish, bad token", http.MethodPost, "/v1/topics/orders.eu/events", "not-a-jwt", `Bearer realm="herald", error="invalid_token", error_description="the token is not a well-formed signed JWT"`},
		{"schema push, no token", http.MethodPost, "/v1/schemas", "", `Bearer realm="herald"`},
		{"SSE, no token", http.MethodGet, "/v1/events?topic=orders.eu", "", `Bearer realm="herald"`},
		{"SSE, bad token", http.MethodGet, "/v1/events?topic=orders.eu", "not-a-jwt", `Bearer realm="herald", error="invalid_token", error_description="the token is not a well-formed signed JWT"`},
	} {
		req, err := http.NewRequest(tc.method, s.url+tc.path, strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != tc.want {
			t.Errorf("%s: %d, WWW-Authenticate %q; want 401 with %q", tc.name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), tc.want)
		}
	}
}

// Finding 1: payloads nested deeper than the bound are refused over REST
// (JSON) and gRPC (protobuf), naming the limit; nothing is published.
func TestDeeplyNestedPayloadsAreRefused(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	ctx := ctxT(t)

	// gRPC: Any in Any, 40 deep, well under the size limit.
	_, err := s.client.Publish(ctx, &heraldv1.PublishRequest{Topic: "deep.grpc", Payload: nestedAny(t, 40)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "more than 32 deep") {
		t.Fatalf("Any nested 40 deep over gRPC: %v, want INVALID_ARGUMENT naming the limit", err)
	}
	// Within the bound it is an ordinary payload.
	if _, err := s.client.Publish(ctx, &heraldv1.PublishRequest{Topic: "deep.grpc", Payload: nestedAny(t, 8)}); err != nil {
		t.Fatalf("Any nested 8 deep: %v", err)
	}
	// An Any deep inside another message (a repeated field's element)
	// counts as much.
	typ, err := anypb.New(&typepb.Type{Name: "t", Options: []*typepb.Option{{Name: "o", Value: nestedAny(t, 40)}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.client.Publish(ctx, &heraldv1.PublishRequest{Topic: "deep.grpc", Payload: typ})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "more than 32 deep") {
		t.Fatalf("an Any nested 40 deep in a repeated field: %v, want INVALID_ARGUMENT naming the limit", err)
	}

	// REST: the same as JSON, and a Struct nested 40 deep.
	structs := strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40)
	for name, payload := range map[string]string{
		"Any in Any":       nestedAnyJSON(40),
		"Struct in Struct": `{"@type":"type.googleapis.com/google.protobuf.Struct","value":` + structs + `}`,
	} {
		resp, err := http.Post(s.url+"/v1/topics/deep.rest/events", "application/json", strings.NewReader(`{"payload":`+payload+`}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "more than 32 deep") {
			t.Errorf("%s 40 deep over REST: %d %s, want 400 naming the limit", name, resp.StatusCode, body)
		}
	}
	all, err := broker.ParsePattern("deep.>")
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.broker.Replay(ctx, []broker.Pattern{all}, broker.EventID{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 1 {
		t.Fatalf("%d events stored, want only the one within the bound", len(res.Events))
	}
}

// Finding 11: only type.googleapis.com/ type URLs (or the configured
// prefixes) are accepted: whatever else a publisher writes before the type
// name would reach browsers verbatim in an Any's "@type".
func TestForeignTypeURLPrefixesAreRefused(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	ctx := ctxT(t)
	value, err := proto.Marshal(order("o-1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{"evil.example/orders.v1.OrderPlaced", "orders.v1.OrderPlaced", "type.googleapis.com/x/orders.v1.OrderPlaced"} {
		_, err := s.client.Publish(ctx, &heraldv1.PublishRequest{Topic: "orders.eu", Payload: &anypb.Any{TypeUrl: url, Value: value}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "type.googleapis.com/") {
			t.Errorf("type URL %q: %v, want INVALID_ARGUMENT naming the accepted prefix", url, err)
		}
	}
	// A prefix the server is configured with is accepted.
	s2 := startServer(t, serverOpts{cfg: bridge.Config{TypeURLPrefixes: []string{"type.googleapis.com/", "types.example.com/"}}})
	if _, err := s2.client.Publish(ctx, &heraldv1.PublishRequest{Topic: "orders.eu", Payload: &anypb.Any{TypeUrl: "types.example.com/orders.v1.OrderPlaced", Value: value}}); err != nil {
		t.Fatalf("a configured prefix: %v", err)
	}
}

// Finding 5: a REST body that does not arrive within the body timeout is
// refused, and its connection let go: neither a huge Content-Length with a
// few bytes sent nor a body dripping in holds the server.
func TestSlowRequestBodiesTimeOut(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{cfg: bridge.Config{BodyReadTimeout: 300 * time.Millisecond}})
	conn, r := rawRequest(t, s.url, "POST /v1/topics/orders.eu/events HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: 2000000", `{"payl`)
	resp, body := readResponse(t, conn, r)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "did not arrive within 300ms") {
		t.Fatalf("a body that never arrives: %d %s, want 400 naming the timeout", resp.StatusCode, body)
	}
	// The server is done with the connection.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatalf("the connection stayed open: %v", err)
	}

	// A small announced body that never comes: refused, and the connection
	// closed rather than held while net/http waits to discard the rest.
	conn, r = rawRequest(t, s.url, "POST /v1/topics/orders.eu/events HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: 1000", `{"payl`)
	if resp, body := readResponse(t, conn, r); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a small body that never arrives: %d %s, want 400", resp.StatusCode, body)
	}
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatalf("the connection of a small body that never arrived stayed open: %v", err)
	}

	// Dripping: a byte at a time, each well within any per-read timeout.
	conn, r = rawRequest(t, s.url, "POST /v1/topics/orders.eu/events HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked", "")
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		resp, _ := readResponse(t, conn, r)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("a dripping body: %d, want 400", resp.StatusCode)
		}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-answered:
			return
		case <-tick.C:
			if _, err := io.WriteString(conn, "1\r\n \r\n"); err != nil {
				<-answered
				return
			}
		}
	}
}

// Finding 5: request bodies in progress share a memory budget; a request
// that finds it used up is refused with 429 and Retry-After rather than
// held.
func TestRequestBodiesShareAMemoryBudget(t *testing.T) {
	t.Parallel()
	// The body read timeout is long enough for a loaded machine: the first
	// request must still hold its share when the probes arrive.
	s := startServer(t, serverOpts{cfg: bridge.Config{MaxBodyMemory: 100 << 10, BodyReadTimeout: 2 * time.Minute}})
	// The first takes 80 KB of the budget and sends only part of it.
	holder := "POST /v1/topics/orders.eu/events HTTP/1.1\r\nHost: herald\r\nContent-Length: 80000"
	first, _ := rawRequest(t, s.url, holder, `{"payload"`)
	// Until the first is refused or done, a second (whole, 80 KB of a
	// malformed body) does not fit: poll until the first holds its share.
	probe := "POST /v1/topics/orders.eu/events HTTP/1.1\r\nHost: herald\r\nContent-Length: 80000"
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, r := rawRequest(t, s.url, probe, strings.Repeat(" ", 80000))
		resp, body := readResponse(t, conn, r)
		conn.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			if resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "request bodies") {
				t.Fatalf("a body over the shared budget: %d %s (Retry-After %q), want 429 naming the budget", resp.StatusCode, body, resp.Header.Get("Retry-After"))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a body over the shared budget: %d %s, want 429", resp.StatusCode, body)
		}
		// A probe served before the first took its share holds the
		// budget, and the first is refused: then start with another.
		_ = first.SetReadDeadline(time.Now().Add(time.Millisecond))
		var b [1]byte
		if n, _ := first.Read(b[:]); n > 0 {
			first.Close()
			first, _ = rawRequest(t, s.url, holder, `{"payload"`)
		} else {
			_ = first.SetReadDeadline(time.Time{})
		}
		<-tick.C
	}
	// Once the first goes away, its memory is given back.
	first.Close()
	payload := `{"payload":{"@type":"type.googleapis.com/google.protobuf.Struct","value":{"a":1}}}`
	for {
		resp, err := http.Post(s.url+"/v1/topics/budget.ok/events", "application/json", strings.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("after the first request went away: %d, want the budget back", resp.StatusCode)
		}
		<-tick.C
	}
}

// Finding 3: fields= is checked after authentication (an anonymous caller
// learns nothing and costs nothing), de-duplicated and capped.
func TestFieldsAreCheckedAfterAuthAndCapped(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	s := startAuthServer(t, k, bridge.Config{}, nil)
	get := func(query, token string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, s.url+"/v1/events?"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.Header.Get("Content-Type") == "text/event-stream" {
			return resp.StatusCode, ""
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("topic=orders.eu&fields=no_such_field", ""); code != http.StatusUnauthorized {
		t.Fatalf("an unknown field path without a token: %d %s, want 401 before the path is looked at", code, body)
	}
	tok := k.hs(t, claims{sub: []string{"orders.>"}})
	if code, body := get("topic=orders.eu&fields=no_such_field", tok); code != http.StatusBadRequest || !strings.Contains(body, "no_such_field") {
		t.Fatalf("an unknown field path with a token: %d %s, want 400 naming it", code, body)
	}
	paths := make([]string, 33)
	for i := range paths {
		paths[i] = fmt.Sprintf("f%d", i)
	}
	if code, body := get("topic=orders.eu&fields="+strings.Join(paths, ","), tok); code != http.StatusBadRequest || !strings.Contains(body, "more than 32 distinct field paths") {
		t.Fatalf("33 field paths: %d %s, want 400 naming the limit", code, body)
	}
	if code, body := get("topic=orders.eu&fields=a.b.c.d.e.f.g.h.i", tok); code != http.StatusBadRequest || !strings.Contains(body, "more than 8 segments") {
		t.Fatalf("a 9-segment path: %d %s, want 400 naming the limit", code, body)
	}
	// Repeats are one path: 1,000 of a known one are fine.
	if code, body := get("topic=orders.eu&fields="+strings.TrimSuffix(strings.Repeat("order_id,", 1000), ","), tok); code != http.StatusOK {
		t.Fatalf("a known path 1,000 times: %d %s, want the stream", code, body)
	}
}

// Finding 4: gRPC Subscribe streams count against the same connection
// limits as SSE streams, and against a cap per gRPC connection.
func TestGRPCSubscribeStreamsAreCounted(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{cfg: bridge.Config{MaxConnectionsPerIP: 3, MaxSubscribesPerConn: 2}})
	sub := heraldv1.NewSubscriberServiceClient(s.conn)
	ctx := ctxT(t)
	open := func(client heraldv1.SubscriberServiceClient) error {
		st, err := client.Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"limits.grpc"}})
		if err != nil {
			return err
		}
		// Herald sends the headers once the stream is subscribed; a
		// refused one ends without them.
		md, err := st.Header()
		if err != nil {
			return err
		}
		if md == nil { // ended without headers: Recv has the status
			_, err := st.Recv()
			return err
		}
		return nil
	}
	for i := range 2 {
		if err := open(sub); err != nil {
			t.Fatalf("Subscribe %d: %v", i+1, err)
		}
	}
	err := open(sub)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "per connection") {
		t.Fatalf("a third Subscribe on one connection: %v, want RESOURCE_EXHAUSTED naming the per-connection cap", err)
	}
	// Another connection from the same address may open one more: the
	// third of the address's three.
	other, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	if err := open(heraldv1.NewSubscriberServiceClient(other)); err != nil {
		t.Fatalf("Subscribe on a second connection: %v", err)
	}
	err = open(heraldv1.NewSubscriberServiceClient(other))
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "per client address") {
		t.Fatalf("a fourth stream from one address: %v, want RESOURCE_EXHAUSTED naming the per-address limit", err)
	}
	// And SSE shares the count.
	resp, err := http.Get(s.url + "/v1/events?topic=limits.sse")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("an SSE stream from an address with 3 gRPC streams: %d, want 429", resp.StatusCode)
	}
}

// Finding 9: a stream whose client reads too slowly for the write timeout
// ends as "slow", like one whose queue overflowed; "write" is for broken
// connections.
func TestWriteTimeoutsCountAsSlow(t *testing.T) {
	// Not parallel: the send buffer setting is global.
	defer bridge.SetStreamSendBuffer(16 << 10)()
	s := startServer(t, serverOpts{cfg: bridge.Config{QueueSize: 8192, WriteTimeout: 300 * time.Millisecond}})
	conn, _, _ := rawSubscribe(t, s, "topic=chat.rooms.stalled")
	_ = conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	text := strings.Repeat("x", 64<<10)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := 0; metricValue(t, s.url, `herald_sse_streams_ended_total{reason="slow"}`) < 1; i++ {
		if i > 3000 {
			t.Fatal("the stalled stream never ended as slow")
		}
		if i < 64 { // enough to fill the socket, far from the queue's size
			s.publish(t, "chat.rooms.stalled", &chatv1.ChatMessage{MessageId: fmt.Sprint(i), Text: text})
		}
		<-tick.C
	}
	if n := metricValue(t, s.url, `herald_sse_streams_ended_total{reason="write"}`); n != 0 {
		t.Errorf("%v streams counted as broken, want the stalled one as slow only", n)
	}
	if n := metricValue(t, s.url, "herald_sse_slow_subscribers_dropped_total"); n != 0 {
		t.Errorf("%v queues overflowed: the test meant the write timeout to end the stream", n)
	}
}

// Finding 9: /metrics can be taken off the public listener and served
// privately.
func TestMetricsCanBePrivate(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{cfg: bridge.Config{PrivateMetrics: true}})
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /metrics on the public port of a server with private metrics: %d, want 404", resp.StatusCode)
	}
	rec := httptest.NewRecorder()
	s.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "herald_subscribers") {
		t.Fatal("MetricsHandler does not serve the metrics")
	}
}

// Finding 10: idempotency keys are scoped to the publisher, and a key
// reused for another event is refused with the first event's id, never
// silently merged.
func TestIdempotencyKeysAreThePublishers(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	s := startAuthServer(t, k, bridge.Config{}, nil)
	ctx := ctxT(t)
	alice := withBearer(ctx, k.hs(t, claims{pub: []string{"orders.>"}, subject: "alice"}))
	bob := withBearer(ctx, k.hs(t, claims{pub: []string{"orders.>"}, subject: "bob"}))
	req := func(id string) *heraldv1.PublishRequest {
		r := request(t, "orders.eu", order(id))
		r.IdempotencyKey = "the-key"
		return r
	}
	first, err := s.client.Publish(alice, req("o-1"))
	if err != nil {
		t.Fatal(err)
	}
	// Bob's key is his own: his event is created.
	other, err := s.client.Publish(bob, req("o-2"))
	if err != nil || other.GetDuplicate() || other.GetId() == first.GetId() {
		t.Fatalf("another publisher's event with the same key: %v %v, want a new event", other, err)
	}
	// Alice's retry is a duplicate of her event.
	again, err := s.client.Publish(alice, req("o-1"))
	if err != nil || !again.GetDuplicate() || again.GetId() != first.GetId() {
		t.Fatalf("the same publisher's retry: %v %v, want a duplicate of %s", again, err, first.GetId())
	}
	// Alice's key for another event: refused, naming the first.
	_, err = s.client.Publish(alice, req("o-3"))
	if status.Code(err) != codes.AlreadyExists || !strings.Contains(status.Convert(err).Message(), first.GetId()) {
		t.Fatalf("a key reused for another event over gRPC: %v, want ALREADY_EXISTS naming %s", err, first.GetId())
	}
	body := `{"payload":{"@type":"type.googleapis.com/orders.v1.OrderPlaced","orderId":"o-4"},"idempotencyKey":"the-key"}`
	hreq, _ := http.NewRequest(http.MethodPost, s.url+"/v1/topics/orders.eu/events", strings.NewReader(body))
	hreq.Header.Set("Authorization", "Bearer "+k.hs(t, claims{pub: []string{"orders.>"}, subject: "alice"}))
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(raw), first.GetId()) {
		t.Fatalf("a key reused for another event over REST: %d %s, want 409 naming %s", resp.StatusCode, raw, first.GetId())
	}
	all, err := broker.ParsePattern("orders.eu")
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.broker.Replay(ctx, []broker.Pattern{all}, broker.EventID{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 2 {
		t.Fatalf("%d events stored, want alice's first and bob's", len(res.Events))
	}
}

// Finding 6: the memory broker's history has an overall byte cap; what it
// evicts is counted where operators look.
func TestRetainedBytesAreCappedAndCounted(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{memory: memory.Options{MaxBytes: 64 << 10}})
	text := strings.Repeat("x", 8<<10)
	for i := range 20 { // 20 × ~8 KiB: over the 64 KiB cap
		s.publish(t, fmt.Sprintf("cap.t%d", i), &chatv1.ChatMessage{Text: text})
	}
	if n := metricValue(t, s.url, "herald_broker_evicted_events_total"); n < 10 {
		t.Fatalf("herald_broker_evicted_events_total = %v after 160 KiB into a 64 KiB cap, want the oldest evicted", n)
	}
	if n := metricValue(t, s.url, "herald_broker_evicted_bytes_total"); n < 80<<10 {
		t.Fatalf("herald_broker_evicted_bytes_total = %v, want at least 80 KiB", n)
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	_ "google.golang.org/protobuf/types/known/emptypb" // resolves the payloads' innermost types
	_ "google.golang.org/protobuf/types/known/structpb"

	"github.com/heraldhq/herald/cmd/herald-bench/internal/floor"
	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker/redis/redistest"
)

func TestScanPayload(t *testing.T) {
	t.Parallel()
	text := padding(256)
	floorJSON := appendJSON(nil, topicName(42), 17, 1767225600123456789, text)
	if len(floorJSON) != 256 {
		t.Errorf("floor JSON is %d bytes, want 256", len(floorJSON))
	}
	req, err := publishRequest(topicName(42), 17, 1767225600123456789, text)
	if err != nil {
		t.Fatal(err)
	}
	var msg chatv1.ChatMessage
	if err := proto.Unmarshal(req.GetPayload().GetValue(), &msg); err != nil {
		t.Fatal(err)
	}
	heraldJSON, err := protojson.Marshal(&msg) // as Herald renders it, random spaces and all
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range [][]byte{floorJSON, heraldJSON, []byte(`{"messageId": "0000000017.1767225600123456789"}`)} {
		seq, stamp, ok := scanPayload(data)
		if !ok || seq != 17 || stamp != 1767225600123456789 {
			t.Errorf("scanPayload(%s) = %d, %d, %v; want 17, 1767225600123456789, true", data, seq, stamp, ok)
		}
	}
	for _, bad := range []string{``, `{}`, `{"messageId":17}`, `{"messageId":"x.1"}`, `{"messageId":"1.x"}`, `{"messageId":"1"}`} {
		if _, _, ok := scanPayload([]byte(bad)); ok {
			t.Errorf("scanPayload(%s) ok, want not", bad)
		}
	}
}

func TestIngestRoundTrip(t *testing.T) {
	t.Parallel()
	var b []byte
	b = floor.AppendIngest(b, "a", []byte("frame one"))
	b = floor.AppendIngest(b, "bench.t00001", []byte("two"))
	r := bufio.NewReader(bytes.NewReader(b))
	var buf []byte
	for _, want := range [][2]string{{"a", "frame one"}, {"bench.t00001", "two"}} {
		topic, frame, grown, err := floor.ReadIngest(r, buf)
		buf = grown
		if err != nil || string(topic) != want[0] || string(frame) != want[1] {
			t.Fatalf("ReadIngest = %q, %q, %v; want %q, %q", topic, frame, err, want[0], want[1])
		}
	}
}

func TestPercentiles(t *testing.T) {
	t.Parallel()
	lat := make([]int64, 1000)
	for i := range lat {
		lat[i] = int64(1000-i) * 1000 // 1..1000 µs, reversed
	}
	p50, p99, p999, maxv := percentiles(lat)
	if p50 != 501 || p99 != 991 || p999 != 1000 || maxv != 1000 {
		t.Errorf("percentiles = %v %v %v %v, want 501 991 1000 1000", p50, p99, p999, maxv)
	}
}

// TestFloorDelivery runs the delivery path of the harness end to end
// against an in-process floor, taking its events over the ingest
// connection and over gRPC (the "grpc" floor): paced events reach every
// stream once, in order, with their latency recorded.
func TestFloorDelivery(t *testing.T) {
	for _, ingest := range []string{"tcp", "grpc"} {
		t.Run(ingest, func(t *testing.T) { testFloorDelivery(t, ingest) })
	}
}

func testFloorDelivery(t *testing.T, ingest string) {
	stop := make(chan struct{})
	defer close(stop)
	f := floor.NewSSE(time.Hour, stop)
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: f}
	go func() { _ = hs.Serve(httpLn) }()
	defer hs.Close()
	ingestLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ingestLn.Close()
	if ingest == "grpc" {
		gs := newFloorGRPC()
		heraldv1.RegisterPublisherServiceServer(gs, floor.SSEOverGRPC{SSE: f})
		go func() { _ = gs.Serve(ingestLn) }()
		defer gs.Stop()
	} else {
		go func() {
			c, err := ingestLn.Accept()
			if err == nil {
				defer c.Close()
				_ = f.Ingest(c)
			}
		}()
	}

	const conns, topics = 6, 2
	win := &window{}
	now := time.Now()
	win.set(now, now.Add(time.Hour))
	cs, err := openSSE(context.Background(), newDialer(3), httpLn.Addr().String(), conns, 4, func(i int) int { return i % topics }, nil, win)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{topicName(0), topicName(1)}
	texts := []string{padding(256), padding(256)}
	var s sink
	if ingest == "grpc" {
		g, err := (&bench{}).newGRPCSink(ingestLn.Addr().String(), names, texts)
		if err != nil {
			t.Fatal(err)
		}
		g.frames = true
		s = g
	} else if s, err = newFloorSink(ingestLn.Addr().String(), names, texts); err != nil {
		t.Fatal(err)
	}
	defer s.close()
	seqs, err := pace(context.Background(), s, 2000, topics, time.Now().Add(50*time.Millisecond), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.finish(time.Second); err != nil {
		t.Fatal(err)
	}
	if seqs[0] == 0 || seqs[1] == 0 {
		t.Fatalf("published %v events per topic, want some on each", seqs)
	}
	drainSSE(cs, func(c *sseConn) uint64 { return seqs[c.topic] }, 10*time.Second)
	closeSSE(cs)
	for i, c := range cs {
		want := int64(seqs[c.topic])
		if c.err != nil || c.received != want || c.inWindow != want || c.dups != 0 || c.gaps != 0 || len(c.lat) != int(want) {
			t.Errorf("stream %d: err %v, received %d (%d in window, %d latencies), %d dups, %d gaps; want %d, none lost",
				i, c.err, c.received, c.inWindow, len(c.lat), c.dups, c.gaps, want)
		}
	}
}

// TestNchanDelivery runs a small fan-out against the nchan peer, as the
// harness runs it in scenarios 1-4: nginx started from the harness's
// configuration, raw POSTs, the harness's SSE client. Every event must
// reach every subscriber once, and the table must show nchan's row. It is
// skipped without nginx and the nchan module, unless
// HERALD_REQUIRE_NCHAN=1.
func TestNchanDelivery(t *testing.T) {
	t.Parallel()
	if _, err := findNchan(); err != nil {
		if os.Getenv("HERALD_REQUIRE_NCHAN") == "1" {
			t.Fatalf("HERALD_REQUIRE_NCHAN=1: %v", err)
		}
		t.Skip(err)
	}
	peers, skipped, err := findPeers("nchan, nchan")
	if err != nil || len(peers) != 1 || peers[0] != "nchan" || len(skipped) != 0 {
		t.Fatalf(`findPeers("nchan, nchan") = %v, %v, %v; want [nchan], none skipped`, peers, skipped, err)
	}
	b := &bench{
		cfg: config{repeat: 1, settle: 100 * time.Millisecond, warmup: 200 * time.Millisecond, duration: time.Second,
			drain: 10 * time.Second, heartbeat: 5 * time.Second, tick: time.Millisecond, payload: 256, dialParallel: 4, publisher: "grpc"},
		dir:    t.TempDir(),
		dialer: newDialer(2),
	}
	b.delivery(deliverySpec{key: "fanout-200", title: "1 fan-out 200/s", conns: 6, topics: 2, rate: 200, kinds: []string{"nchan"}})
	r := b.find("fanout-200", "nchan")
	if r == nil {
		t.Fatalf("no nchan result; results: %+v", b.results[0])
	}
	// Lost counts the seqs skipped between two received and those after
	// the last received; with no duplicates, every event came once.
	if r.Published == 0 || r.Deliveries == 0 || r.Lost != 0 || r.Dups != 0 || r.Errors != 0 || r.Ended != 0 {
		t.Errorf("nchan: %d published, %d deliveries, %d lost, %d duplicated, %d refused, %d streams ended; want some, none lost",
			r.Published, r.Deliveries, r.Lost, r.Dups, r.Errors, r.Ended)
	}
	if r.RSSBefore <= 0 || r.RSSConnected <= 0 {
		t.Errorf("nchan: RSS %d before, %d connected; want nginx's, from /proc", r.RSSBefore, r.RSSConnected)
	}
	var out bytes.Buffer
	b.printTables(&out)
	if !regexp.MustCompile(`(?m)^\s*1 fan-out 200/s\s+nchan\s+6\s`).Match(out.Bytes()) {
		t.Errorf("no nchan row in the tables:\n%s", out.String())
	}
}

func TestFindPeers(t *testing.T) {
	t.Parallel()
	if peers, skipped, err := findPeers(" , "); err != nil || len(peers)+len(skipped) != 0 {
		t.Errorf(`findPeers(" , ") = %v, %v, %v; want none`, peers, skipped, err)
	}
	if _, _, err := findPeers("nchan,pushpin"); err == nil || !strings.Contains(err.Error(), `"pushpin"`) {
		t.Errorf(`findPeers("nchan,pushpin") error = %v; want one naming "pushpin"`, err)
	}
}

// TestPipeSink publishes pipelined POSTs to an in-process floor, whose
// net/http server answers them one after another as nginx does: every
// event reaches every stream once, in order, and every POST is answered.
func TestPipeSink(t *testing.T) {
	t.Parallel()
	stop := make(chan struct{})
	defer close(stop)
	f := floor.NewSSE(time.Hour, stop)
	mux := http.NewServeMux()
	mux.Handle("GET /v1/events", f)
	mux.HandleFunc("POST /v1/topics/{topic}/events", f.Publish)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()

	const conns, topics = 6, 3
	win := &window{}
	now := time.Now()
	win.set(now, now.Add(time.Hour))
	cs, err := openSSE(context.Background(), newDialer(3), ln.Addr().String(), conns, 4, func(i int) int { return i % topics }, nil, win)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{topicName(0), topicName(1), topicName(2)}
	s, err := newPipeSink(ln.Addr().String(), names, []string{padding(256), padding(256), padding(256)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	seqs, err := pace(context.Background(), s, 3000, topics, time.Now().Add(100*time.Millisecond), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if refused, err := s.finish(10 * time.Second); err != nil || refused != 0 {
		t.Fatalf("finish = %d refused, %v; want 0, nil", refused, err)
	}
	drainSSE(cs, func(c *sseConn) uint64 { return seqs[c.topic] }, 10*time.Second)
	closeSSE(cs)
	for i, c := range cs {
		want := int64(seqs[c.topic])
		if want == 0 || c.err != nil || c.received != want || c.dups != 0 || c.gaps != 0 {
			t.Errorf("stream %d: err %v, received %d, %d dups, %d gaps; want %d (more than 0), none lost", i, c.err, c.received, c.dups, c.gaps, want)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	text := `# HELP go_memstats_heap_inuse_bytes Number of heap bytes that are in use.
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 5.767168e+06
herald_sse_streams_ended_total{reason="client"} 3
herald_sse_streams_ended_total{reason="slow"} 40
herald_sse_streams_ended_total{reason="write"} 10 1767225600000

herald_subscribers 1000
`
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if got := m["go_memstats_heap_inuse_bytes"]; got != 5767168 {
		t.Errorf("heap = %v, want 5767168", got)
	}
	if n, ok := cutStreams(m); !ok || n != 50 {
		t.Errorf("cutStreams = %d, %v; want 50, true", n, ok)
	}
	if _, ok := cutStreams(map[string]float64{"herald_subscribers": 1}); ok {
		t.Error("cutStreams without the metric: ok, want not")
	}
	for _, bad := range []string{"lonely_name", `x{a="b" 1`, "x one"} {
		if _, err := parseMetrics(strings.NewReader(bad)); err == nil {
			t.Errorf("parseMetrics(%q): no error", bad)
		}
	}
}

// TestFloorSlowClient runs the slow scenario's client side against an
// in-process floor with a write timeout: a stalled stream of two topics,
// with a small receive buffer, is cut once the floor's writes to it block
// for the timeout, and the healthy streams then get every live event.
// The bulk events go out first, so the floor blocks on the stalled stream
// before any live event: once the healthy streams have them all, it has
// been cut. (Reading it earlier would unblock the floor instead.)
func TestFloorSlowClient(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	f := floor.NewSSE(time.Hour, stop)
	f.WriteTimeout = 100 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A small send buffer on the floor's side, so that a few bulk events
	// fill the stalled stream's socket whatever the kernel's autotuning.
	hs := &http.Server{Handler: f, ConnState: func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			_ = c.(*net.TCPConn).SetWriteBuffer(16 << 10)
		}
	}}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	ingestLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ingestLn.Close()
	go func() {
		c, err := ingestLn.Accept()
		if err == nil {
			defer c.Close()
			_ = f.Ingest(c)
		}
	}()

	addr := ln.Addr().String()
	names := []string{topicName(0), topicName(1)}
	d := newDialer(2)
	win := &window{}
	now := time.Now()
	win.set(now, now.Add(time.Hour))
	healthy, err := openSSE(context.Background(), d, addr, 3, 3, func(int) int { return 0 }, nil, win)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSSE(healthy)
	stalled, err := openStalled(context.Background(), d.withReceiveBuffer(stalledReceiveBuffer), addr, 1, names)
	defer closeConns(stalled)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newFloorSink(ingestLn.Addr().String(), names, []string{padding(256), padding(64 << 10)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	load := slowLoad{rate: 2000, bulkFrom: time.Now(), bulk: 8, bulkRate: 1e9}
	live, bulk, err := paceSlow(context.Background(), s, load, time.Now().Add(50*time.Millisecond), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.finish(time.Second); err != nil {
		t.Fatal(err)
	}
	if live == 0 || bulk != 8 {
		t.Fatalf("published %d live and %d bulk events, want some and 8", live, bulk)
	}
	drainSSE(healthy, func(*sseConn) uint64 { return live }, 10*time.Second)
	closeSSE(healthy)
	if n := closedByServer(stalled, 10*time.Second); n != 1 {
		t.Errorf("%d stalled streams closed by the floor, want 1", n)
	}
	for i, c := range healthy {
		if c.err != nil || uint64(c.received) != live || c.dups != 0 || c.gaps != 0 {
			t.Errorf("healthy stream %d: err %v, received %d, %d dups, %d gaps; want %d, none lost", i, c.err, c.received, c.dups, c.gaps, live)
		}
	}
}

// TestHostilePayloads checks that scenario 7's payloads are what their
// names say: the JSON decodes as Herald's REST gateway decodes it, to Any
// in Any as deep as asked; the binary one is as deep as fits in its size.
func TestHostilePayloads(t *testing.T) {
	t.Parallel()
	body := nestedAnyJSONBody(5)
	var req heraldv1.PublishRequest
	if err := protojson.Unmarshal(body, &req); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	if n, last := anyDepth(t, req.GetPayload()); n != 5 || last != structURL {
		t.Errorf("JSON payload: %d Any around %s, want 5 around %s", n, last, structURL)
	}
	if n := len(nestedAnyJSONBody(5000)); n < 299_000 || n > 301_000 {
		t.Errorf("5,000 levels of JSON are %d bytes, want about 300 KB", n)
	}

	a, depth := nestedAnyBinary(4096)
	if size := proto.Size(a); size > 4096 || size < 4096-50 {
		t.Errorf("binary payload of at most 4096 bytes is %d: not as deep as fits", size)
	}
	if n, last := anyDepth(t, a); n != depth-1 || last != emptyURL {
		t.Errorf("binary payload: %d Any around %s, want %d around %s", n, last, depth-1, emptyURL)
	}
	big, depth := nestedAnyBinary(1<<20 - 1<<10)
	if size := proto.Size(big); size > 1<<20-1<<10 || depth < 23_000 {
		t.Errorf("the default binary payload is %d bytes, %d deep; want at most 1 MiB - 1 KiB, about 23,000 deep", size, depth)
	}
}

// anyDepth unwraps a of its google.protobuf.Any levels, one decode each,
// and returns how many there were and the type of what they hold.
func anyDepth(t *testing.T, a *anypb.Any) (int, string) {
	t.Helper()
	n := 0
	for a.GetTypeUrl() == anyURL {
		var inner anypb.Any
		if err := proto.Unmarshal(a.GetValue(), &inner); err != nil {
			t.Fatalf("level %d: %v", n, err)
		}
		a = &inner
		n++
	}
	return n, a.GetTypeUrl()
}

func TestMintToken(t *testing.T) {
	t.Parallel()
	secret := []byte(strings.Repeat("s", 32))
	signed, err := mintToken(secret, []string{"hostile.>"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Parse([]byte(signed), jwt.WithKey(jwa.HS256(), secret))
	if err != nil {
		t.Fatal(err)
	}
	var grants map[string]any
	if err := tok.Get("herald", &grants); err != nil {
		t.Fatal(err)
	}
	if got, _ := json.Marshal(grants); string(got) != `{"publish":["hostile.\u003e"],"subscribe":[]}` {
		t.Errorf("herald claim %s, want publish [hostile.>] and an empty subscribe list", got)
	}
	if exp, ok := tok.Expiration(); !ok || time.Until(exp) < 59*time.Minute {
		t.Errorf("exp %v, want an hour from now", exp)
	}
}

func TestMostOverlapping(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		spans [][2]int64
		want  int
	}{
		{nil, 0},
		{[][2]int64{{0, 10}}, 1},
		{[][2]int64{{0, 10}, {10, 20}}, 1}, // one ends as the other starts
		{[][2]int64{{0, 10}, {5, 20}, {6, 7}, {8, 30}}, 3},
		{[][2]int64{{20, 30}, {0, 100}, {25, 26}}, 3},
	} {
		if got := mostOverlapping(tc.spans); got != tc.want {
			t.Errorf("mostOverlapping(%v) = %d, want %d", tc.spans, got, tc.want)
		}
	}
}

func TestCodeName(t *testing.T) {
	t.Parallel()
	for c, want := range map[codes.Code]string{codes.OK: "OK", codes.InvalidArgument: "INVALID_ARGUMENT", codes.Unauthenticated: "UNAUTHENTICATED"} {
		if got := codeName(c); got != want {
			t.Errorf("codeName(%v) = %q, want %q", c, got, want)
		}
	}
}

// TestExchangeHTTP runs the hostile scenario's REST client against a
// server that refuses a publish before reading its body, as Herald does,
// and one that waits for a body that never comes: the first is answered
// although its body is never read, the second is not, and fire paces and
// counts both.
func TestExchangeHTTP(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /refuse", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"code":16,"message":"no token"}`, http.StatusUnauthorized)
	})
	mux.HandleFunc("POST /wait", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // until the client gives up
		<-release
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	defer close(release)
	addr, d := ln.Addr().String(), newDialer(2)
	head := func(path string, length int) []byte {
		return fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", path, addr, length)
	}

	body := nestedAnyJSONBody(5000) // more than a server reads after refusing
	send := func() outcome { return exchangeHTTP(d, addr, head("/refuse", len(body)), body, 10*time.Second) }
	tl := newTally(time.Now())
	sent := fire(1000, time.Now().Add(20*time.Millisecond), time.Millisecond, send, tl)
	tl.wait()
	if s := tl.statuses["401"]; sent == 0 || s == nil || s.N != sent || s.Sample != "no token" || len(tl.statuses) != 1 {
		t.Errorf("%d refused before their body was read: %s; want all answered 401 with the message", sent, statusSummary(tl.statuses))
	}

	if o := exchangeHTTP(d, addr, head("/wait", 1000), []byte(`{"payl`), 100*time.Millisecond); o.status != noAnswer {
		t.Errorf("a body that never comes: %+v, want no answer", o)
	}
}

// TestMain lets the test binary be the floor process, as herald-bench is:
// the harness starts floors by re-executing itself with "floor-sse".
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "floor-") {
		if err := runFloor(os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "herald-bench:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHTTP2Delivery runs a small fan-out over HTTPS with HTTP/2 (one
// connection per subscriber) and over h2c (several streams per
// connection) against the floor and a real herald process, as
// --scenarios fanout-h2,fanout-h2c does, and checks that every subscriber
// got every event once, over HTTP/2.
func TestHTTP2Delivery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs herald")
	}
	dir := t.TempDir()
	bin, err := buildHerald(context.Background(), "../herald", dir)
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{dir: dir, heraldBin: bin, dialer: newDialer(2), heraldDev: true,
		cfg: config{warmup: 100 * time.Millisecond, duration: 300 * time.Millisecond, settle: 10 * time.Millisecond,
			drain: 10 * time.Second, heartbeat: time.Hour, tick: time.Millisecond, payload: 256, publisher: "grpc",
			dialParallel: 4, h2StreamsPerConn: 3}}
	if b.schemas, err = writeSchemas(dir); err != nil {
		t.Fatal(err)
	}
	const subs, rate = 7, 100
	for _, proto := range []string{protoH2, protoH2C} {
		for _, kind := range []string{"floor", "herald"} {
			spec := deliverySpec{key: "fanout-" + proto, conns: subs, topics: 1, rate: rate, proto: proto}
			r, err := b.runDelivery(spec, kind)
			if err != nil {
				t.Fatalf("%s %s: %v", proto, kind, err)
			}
			// The window holds about rate × duration events; each of
			// them must reach every subscriber once.
			if r.Published < 10 || r.Lost != 0 || r.Dups != 0 || r.Ended != 0 || r.Deliveries < r.Published*subs*9/10 {
				t.Errorf("%s %s: published %d in the window, %d deliveries in it, lost %d, %d dups, %d streams ended by the server; want every event to every one of %d subscribers once",
					proto, kind, r.Published, r.Deliveries, r.Lost, r.Dups, r.Ended, subs)
			}
		}
	}
}

// TestClusterScenario runs the cluster scenario tiny, as the harness runs
// it: a nats-server built from the module graph and Debian's redis-server
// started on free ports, Herald nodes built from ./cmd/herald, the floor
// client, subscribers on 1 and 2 nodes. Every event published through
// Herald must reach every subscriber of its topic once, and every row must
// be in the tables and survive the --json round trip. The Redis part is
// skipped without redis-server, unless HERALD_REQUIRE_REDIS=1.
func TestClusterScenario(t *testing.T) {
	dir := t.TempDir()
	for _, pkg := range [][2]string{{"herald", "github.com/heraldhq/herald/cmd/herald"}, {"nats-server", "github.com/nats-io/nats-server/v2"}} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, pkg[0]), pkg[1]).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg[1], err, out)
		}
	}
	for _, kind := range []string{"nats", "redis"} {
		t.Run(kind, func(t *testing.T) {
			if kind == "redis" {
				redistest.Binary(t)
			}
			b := &bench{
				cfg: config{repeat: 1, settle: 100 * time.Millisecond, warmup: 300 * time.Millisecond, duration: 700 * time.Millisecond,
					drain: 10 * time.Second, heartbeat: 5 * time.Second, payload: 256, dialParallel: 4, inflight: 16, callers: 4,
					clusterBrokers: kind, clusterNodes: "1,2", clusterTopics: "1,3", clusterSubs: 6, natsServer: filepath.Join(dir, "nats-server")},
				dir:       t.TempDir(),
				dialer:    newDialer(2),
				heraldBin: filepath.Join(dir, "herald"),
				heraldDev: true,
			}
			var err error
			if b.schemas, err = writeSchemas(b.dir); err != nil {
				t.Fatal(err)
			}
			b.cluster()
			for _, topics := range []string{"1t", "3t"} {
				key := "cluster-" + kind + "-" + topics
				for _, server := range []string{"floor", "herald-p", "herald-1", "herald-2"} {
					r := b.find(key, server)
					if r == nil {
						t.Errorf("%s %s: no result; results: %s", key, server, notes(b.results))
						continue
					}
					if r.PublishPerSec <= 0 || r.Errors != 0 || r.Broker != kind {
						t.Errorf("%s %s: %.0f publishes/s, %d errors, broker %q; want some, none, %q", key, server, r.PublishPerSec, r.Errors, r.Broker, kind)
					}
					if server == "floor" {
						continue
					}
					if server == "herald-p" { // a node that only takes publishes
						if r.Conns != 0 || r.Deliveries != 0 || r.Nodes != 1 {
							t.Errorf("%s %s: %d subscribers, %d deliveries, %d nodes; want none, none, 1", key, server, r.Conns, r.Deliveries, r.Nodes)
						}
						continue
					}
					if r.Conns != 6 || r.Deliveries == 0 || r.Lost != 0 || r.Dups != 0 || r.Ended != 0 || r.CPUPerDelivery <= 0 {
						t.Errorf("%s %s: %d subscribers, %d deliveries, %d lost, %d duplicated, %d ended, %.2f µs/delivery; want 6, some, none lost, CPU measured (%s)",
							key, server, r.Conns, r.Deliveries, r.Lost, r.Dups, r.Ended, r.CPUPerDelivery, r.Remark)
					}
				}
			}
			if kind == "nats" {
				if r := b.find("cluster-nats-unary", "herald"); r == nil || r.PublishPerSec <= 0 || r.Errors != 0 {
					t.Errorf("unary Publish on JetStream: %+v; want publishes, no errors", r)
				}
			}
			// The tables, and the same after the --json round trip.
			raw, err := json.Marshal(b.results)
			if err != nil {
				t.Fatal(err)
			}
			again := &bench{cfg: config{repeat: 1}}
			if err := json.Unmarshal(raw, &again.results); err != nil {
				t.Fatal(err)
			}
			for _, x := range []*bench{b, again} {
				var out bytes.Buffer
				x.printTables(&out)
				for _, row := range []string{`10 ` + kind + ` 1 topic\s+floor\s`, `10 ` + kind + ` 1 topic\s+herald-2\s+2\s+6\s+\d+\s+[0-9.]+×\s+reported\s`, `10 ` + kind + ` 1 topic\s+herald-p\s+1\s+0\s+\d+\s+[0-9.]+×\s+(met|MISSED)\s`, `10 ` + kind + ` 3 topics\s+herald-1\s+1\s+6\s`} {
					if !regexp.MustCompile(`(?m)^\s*` + row).Match(out.Bytes()) {
						t.Errorf("no row %q in the tables:\n%s", row, out.String())
					}
				}
			}
		})
	}
}

// notes lists the results' scenarios, servers and notes, for a failure.
func notes(rs []*result) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s/%s: %q", r.Scenario, r.Server, r.Note))
	}
	return strings.Join(parts, "; ")
}

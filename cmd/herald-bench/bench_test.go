package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/cmd/herald-bench/internal/floor"
	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
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
// against an in-process floor: paced events reach every stream once, in
// order, with their latency recorded.
func TestFloorDelivery(t *testing.T) {
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
	go func() {
		c, err := ingestLn.Accept()
		if err == nil {
			defer c.Close()
			_ = f.Ingest(c)
		}
	}()

	const conns, topics = 6, 2
	win := &window{}
	now := time.Now()
	win.set(now, now.Add(time.Hour))
	cs, err := openSSE(context.Background(), newDialer(3), httpLn.Addr().String(), conns, 4, func(i int) int { return i % topics }, win)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{topicName(0), topicName(1)}
	s, err := newFloorSink(ingestLn.Addr().String(), names, []string{padding(256), padding(256)})
	if err != nil {
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
	healthy, err := openSSE(context.Background(), d, addr, 3, 3, func(int) int { return 0 }, win)
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

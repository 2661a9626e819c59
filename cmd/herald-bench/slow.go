package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Scenario 6, slow clients: healthy subscribers of a paced topic share the
// server with stalled ones, which subscribe to it and to a second topic of
// large events and never read. A server that waits on a stalled subscriber
// holds the healthy ones up for its write timeout; one that buffers per
// subscriber grows by what the stalled ones did not read. The scenario
// measures both on the healthy subscribers' latency and the server's
// memory, and checks that the stalled streams, and only they, are cut.

// stalledReceiveBuffer is the receive buffer (SO_RCVBUF) a stalled
// subscriber asks for before it connects, so that its window is small from
// the handshake on: the server's writes to it block after its own send
// buffer fills, whatever the kernel's autotuning of the client's side.
const stalledReceiveBuffer = 4096

func (b *bench) slow() {
	c := b.cfg
	title := fmt.Sprintf("6 slow %d+%d stalled", c.slowSubs, c.slowStalled)
	b.runEach(title, b.kinds(), func(kind string) (*result, error) { return b.runSlow(title, kind) },
		func(kind string) *result {
			return &result{Scenario: "slow", Title: title, Server: kind, Conns: c.slowSubs, Topics: 2, Rate: c.slowRate, Stalled: c.slowStalled}
		})
}

func (b *bench) runSlow(title, kind string) (*result, error) {
	cfg := b.cfg
	wt := cfg.slowWriteTimeout
	r := &result{Scenario: "slow", Title: title, Server: kind, Conns: cfg.slowSubs, Topics: 2, Rate: cfg.slowRate,
		Stalled: cfg.slowStalled, WriteTimeout: wt.Seconds(), StalledEnded: -1}
	var srv *server
	var err error
	if kind == "herald" {
		extra := []string{"--write-timeout", wt.String()}
		if cfg.profileDir == "" && b.heraldBin != "" && hasFlag(b.heraldBin, "debug-addr") {
			extra = append(extra, "--debug-addr", "127.0.0.1:0") // to force a collection before reading the heap
		}
		srv, err = b.startHerald("slow", extra...)
	} else {
		srv, err = b.startFloor("slow", kind, "sse", "--write-timeout", wt.String())
	}
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	stats := newScraper(srv)

	names := []string{topicName(0), topicName(1)}
	texts := []string{padding(cfg.payload), padding(cfg.slowBulkSize)}
	var s sink
	if kind == "herald" {
		s, err = b.newGRPCSink(srv.grpc, names, texts)
	} else {
		s, err = newFloorSink(srv.ingest, names, texts)
	}
	if err != nil {
		return nil, err
	}
	defer s.close()
	<-time.After(cfg.settle)
	r.RSSBefore = srv.rss()

	win := &window{}
	win.from.Store(1<<63 - 1)
	ctx := context.Background()
	healthy, err := openSSE(ctx, b.dialer, srv.http, cfg.slowSubs, cfg.dialParallel, func(int) int { return 0 }, nil, win)
	if err != nil {
		return nil, err
	}
	defer func() { closeSSE(healthy) }()
	stalled, err := openStalled(ctx, b.dialer.withReceiveBuffer(stalledReceiveBuffer), srv.http, cfg.slowStalled, names)
	defer closeConns(stalled)
	if err != nil {
		return nil, err
	}
	<-time.After(cfg.settle)
	r.RSSConnected = srv.rss()
	r.HeapConnected = stats.heap(true)
	b.heapProfile(srv, "slow")
	peaks := samplePeaks(srv, stats, 200*time.Millisecond)

	// The stalled subscribers' sockets absorb the warm-up's live events;
	// the bulk ones, from the window's start, fill them, so that they are
	// cut inside the window, where the healthy ones' latency is measured.
	start := time.Now()
	from := start.Add(cfg.warmup)
	to := from.Add(cfg.duration)
	win.set(from, to)
	load := slowLoad{rate: cfg.slowRate, bulkFrom: from, bulk: cfg.slowBulk, bulkRate: cfg.slowBulkRate}
	var live, bulk uint64
	var pubErr error
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		live, bulk, pubErr = paceSlow(ctx, s, load, to, cfg.tick)
	}()
	waitUntil(from)
	a := snapCPU(srv.pid)
	profDone := b.profile(srv, "slow", cfg.duration)
	waitUntil(to)
	z := snapCPU(srv.pid)
	profDone()
	var remarks []string
	select {
	case <-pubDone:
		if pubErr != nil {
			return nil, fmt.Errorf("publishing: %w", pubErr)
		}
		refused, err := s.finish(10 * time.Second)
		if err != nil {
			return nil, err
		}
		r.Errors = refused
		drainSSE(healthy, func(*sseConn) uint64 { return live }, cfg.drain)
	case <-time.After(time.Second):
		// The publisher is stuck in a send: the server stopped reading
		// events, as the floor does while its one writer waits on a
		// stalled subscriber. Closing the sink ends the send. Its healthy
		// streams are not drained: getting past every stalled one would
		// take it stalled × write timeout.
		s.close()
		<-pubDone
		remarks = append(remarks, "it stopped reading published events")
	}

	if stats.metrics != "" {
		// Herald cuts a stalled stream within 9/8 of its write timeout; by
		// now it has had the window and the drain.
		deadline := time.Now().Add(max(cfg.drain, 2*wt))
		var m map[string]float64
		for {
			m = stats.scrape()
			if n, ok := cutStreams(m); ok {
				r.StalledEnded = n
			}
			if r.StalledEnded >= cfg.slowStalled || time.Now().After(deadline) {
				break
			}
			<-time.After(50 * time.Millisecond)
		}
		if r.StalledEnded > 0 {
			remarks = append(remarks, fmt.Sprintf("it cut %.0f stalled streams as their queues overflowed, %.0f as a write failed or timed out",
				m[`herald_sse_streams_ended_total{reason="slow"}`], m[`herald_sse_streams_ended_total{reason="write"}`]))
		}
	}
	r.RSSPeak, r.HeapPeak = peaks()
	r.HeapAfter = stats.heap(true)
	r.RSSAfter = srv.rss()
	r.RSSPeak = max(r.RSSPeak, r.RSSConnected, r.RSSAfter)
	if !srv.alive() {
		return nil, fmt.Errorf("%s exited during the run", kind)
	}
	r.Ended = ended(healthy)
	closeSSE(healthy)
	// A stream the server has not closed within one more write timeout
	// counts as not cut.
	r.StalledClosed = closedByServer(stalled, wt)

	var lat []int64
	var undelivered int64
	for _, c := range healthy {
		r.Deliveries += c.inWindow
		r.Dups += c.dups
		r.Lost += c.gaps
		if last := c.last.Load(); last < live {
			undelivered += int64(live - last)
		}
		r.Heartbeats += c.heartbeats
		lat = append(lat, c.lat...)
	}
	r.Lost += undelivered
	r.P50, r.P99, r.P999, r.Max = percentiles(lat)
	b.cpu(r, a, z)
	r.DeliveriesPerSec = float64(r.Deliveries) / r.Window
	if r.Deliveries > 0 {
		r.CPUPerDelivery = r.ServerCPU / float64(r.Deliveries) * 1e6
	}
	liveSize := int64(len(appendJSON(nil, names[0], 0, 0, texts[0])))
	bulkSize := int64(len(appendJSON(nil, names[1], 0, 0, texts[1])))
	r.Bulk, r.BulkSize = int(bulk), int(bulkSize)
	r.HistoryBytes = int64(live)*liveSize + int64(bulk)*bulkSize
	r.MissedBytes = int64(cfg.slowStalled) * r.HistoryBytes
	if kind != "herald" && undelivered > 0 {
		remarks = append(remarks, fmt.Sprintf("%d events never reached the healthy streams: its one writer was still held up by stalled subscribers when the run ended (a write to one may block it for up to the write timeout, %v)", undelivered, wt))
	}
	r.Remark = strings.Join(remarks, "; ")
	return r, nil
}

// cutStreams is how many SSE streams Herald's metrics say it ended for
// being stalled: dropped as too slow, or a write that failed or timed out.
func cutStreams(m map[string]float64) (int, bool) {
	slow, ok1 := m[`herald_sse_streams_ended_total{reason="slow"}`]
	write, ok2 := m[`herald_sse_streams_ended_total{reason="write"}`]
	return int(slow + write), ok1 && ok2
}

// A slowLoad is what the slow scenario publishes: live events at rate on
// topic 0 throughout, and from bulkFrom on, bulk events on topic 1 at
// bulkRate until bulk of them are out.
type slowLoad struct {
	rate     float64
	bulkFrom time.Time
	bulk     int
	bulkRate float64
}

// paceSlow publishes load through s until stop, checking its schedule every
// tick like pace, and returns how many live and bulk events were sent.
func paceSlow(ctx context.Context, s sink, load slowLoad, stop time.Time, tick time.Duration) (live, bulk uint64, err error) {
	start := time.Now()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		now := time.Now()
		if !now.Before(stop) {
			return live, bulk, nil
		}
		for due := uint64(load.rate * now.Sub(start).Seconds()); live < due; live++ {
			if err := s.send(0, live+1); err != nil {
				return live, bulk, err
			}
		}
		if !now.Before(load.bulkFrom) {
			due := min(uint64(load.bulkRate*now.Sub(load.bulkFrom).Seconds())+1, uint64(load.bulk))
			for ; bulk < due; bulk++ {
				if err := s.send(1, bulk+1); err != nil {
					return live, bulk, err
				}
			}
		}
		select {
		case <-ctx.Done():
			return live, bulk, ctx.Err()
		case <-t.C:
		}
	}
}

// openStalled opens n streams of topics that are never read: clients that
// stopped reading and keep their connections open. d should ask for a
// small receive buffer, so that what they do not read piles up in the
// server, not in their kernel. On error it returns the streams it opened.
func openStalled(ctx context.Context, d *dialer, httpAddr string, n int, topics []string) ([]net.Conn, error) {
	var conns []net.Conn
	for i := range n {
		nc, err := d.dial(ctx, httpAddr)
		if err != nil {
			return conns, fmt.Errorf("stalled stream %d: %w", i, err)
		}
		if _, _, err := requestSSE(nc, httpAddr, "", topics...); err != nil {
			nc.Close()
			return conns, fmt.Errorf("stalled stream %d: %w", i, err)
		}
		conns = append(conns, nc)
	}
	return conns, nil
}

func closeConns(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// closedByServer reports how many of conns the server has closed. The
// server's close reaches a client after everything it wrote before, so each
// is read to its end, for at most wait. Each gets a large receive buffer
// first: through a stalled one's few KiB, reading out the MiBs the server's
// kernel holds for it takes tens of milliseconds, seconds for all of them
// on a busy machine.
func closedByServer(conns []net.Conn, wait time.Duration) int {
	var n atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(wait)
	for _, c := range conns {
		wg.Go(func() {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(4 << 20)
			}
			_ = c.SetReadDeadline(deadline)
			_, err := io.Copy(io.Discard, c)
			if err == nil || errors.Is(err, syscall.ECONNRESET) {
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return int(n.Load())
}

// samplePeaks samples the server's RSS and Go heap every interval until the
// returned func is called, which returns the highest of each. The heap is
// read without forcing a collection, so its peak includes garbage.
func samplePeaks(srv *server, stats *scraper, every time.Duration) func() (rss, heap int64) {
	stop, done := make(chan struct{}), make(chan struct{})
	var rss, heap int64
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			rss, heap = max(rss, srv.rss()), max(heap, stats.heap(false))
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() (int64, int64) {
		close(stop)
		<-done
		return rss, heap
	}
}

// withReceiveBuffer returns a dialer like d whose connections ask for a
// receive buffer of n bytes before they connect.
func (d *dialer) withReceiveBuffer(n int) *dialer {
	nd := &dialer{ds: slices.Clone(d.ds)}
	for i := range nd.ds {
		nd.ds[i].Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n) }); err != nil {
				return err
			}
			return serr
		}
	}
	return nd
}

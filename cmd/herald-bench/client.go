package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A dialer spreads connections over several loopback source addresses
// (127.0.0.2, 127.0.0.3, ...), so that tens of thousands of connections to
// one server port do not run out of ephemeral ports.
type dialer struct {
	ds   []net.Dialer
	next atomic.Uint64
}

func newDialer(sources int) *dialer {
	d := &dialer{}
	for i := range max(sources, 1) {
		ip := net.IPv4(127, 0, 0, byte(2+i))
		d.ds = append(d.ds, net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second})
	}
	return d
}

func (d *dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	i := d.next.Add(1) % uint64(len(d.ds))
	return d.ds[i].DialContext(ctx, "tcp", addr)
}

// window is the measurement window: only events stamped inside it count
// for latency and throughput, in unix nanoseconds.
// It is set once the streams are open, while their readers run.
type window struct{ from, to atomic.Int64 }

func (w *window) set(from, to time.Time) {
	w.to.Store(to.UnixNano())
	w.from.Store(from.UnixNano())
}

func (w *window) has(ns int64) bool { return ns >= w.from.Load() && ns < w.to.Load() }

// received is the total of the streams' received counters, for watching
// progress while draining.
func received(conns []*sseConn) (n int64) {
	for _, c := range conns {
		n += atomic.LoadInt64(&c.received)
	}
	return n
}

// An sseConn is one SSE subscription of the harness. Its reader goroutine
// owns every field but last (read by the harness while draining) and closed.
type sseConn struct {
	nc net.Conn
	// stream, when set, is what to close instead of nc: an HTTP/2
	// stream (h2.go).
	stream io.Closer
	topic  int
	win    *window

	last   atomic.Uint64 // highest seq received
	closed atomic.Bool   // the harness closed it (not the server)

	received   int64 // events, all of them
	inWindow   int64 // received in the window
	stamped    int64 // published in the window (their latency is in lat)
	dups       int64 // seq not above the last one
	gaps       int64 // events skipped between two received ones
	heartbeats int64
	lat        []int64 // publish→receive of events in the window, ns
	err        error   // why reading ended, when the server ended it
	done       chan struct{}
}

// openSSE opens n SSE streams to httpAddr, stream i subscribing to
// topicName(topicOf(i)) with the filter filterOf(i) (none if filterOf is
// nil), dialParallel at a time, and returns once every one has its
// response headers (so the server has subscribed it).
func openSSE(ctx context.Context, d *dialer, httpAddr string, n, dialParallel int, topicOf func(int) int, filterOf func(int) string, win *window) ([]*sseConn, error) {
	conns := make([]*sseConn, n)
	sem := make(chan struct{}, max(dialParallel, 1))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range n {
		sem <- struct{}{}
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			filter := ""
			if filterOf != nil {
				filter = filterOf(i)
			}
			c, err := dialSSE(ctx, d, httpAddr, topicOf(i), filter, win)
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("stream %d: %w", i, err)
				}
				mu.Unlock()
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	if firstErr != nil {
		closeSSE(conns)
		return nil, firstErr
	}
	return conns, nil
}

func dialSSE(ctx context.Context, d *dialer, httpAddr string, topic int, filter string, win *window) (*sseConn, error) {
	nc, err := d.dial(ctx, httpAddr)
	if err != nil {
		return nil, err
	}
	br, chunked, err := requestSSE(nc, httpAddr, filter, topicName(topic))
	if err != nil {
		nc.Close()
		return nil, err
	}
	var body io.Reader = br
	if chunked {
		body = httputil.NewChunkedReader(br)
	}
	c := &sseConn{nc: nc, topic: topic, win: win, done: make(chan struct{})}
	go c.read(bufio.NewReaderSize(body, 4096))
	return c, nil
}

// requestSSE requests a stream of topics, with filter if it is not "", on
// nc and reads the response head. It returns the reader of the body, which
// may hold the body's first bytes, and whether the body is chunked.
func requestSSE(nc net.Conn, httpAddr, filter string, topics ...string) (br *bufio.Reader, chunked bool, err error) {
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	defer func() { _ = nc.SetDeadline(time.Time{}) }()
	q := make(url.Values)
	q["topic"] = topics
	if filter != "" {
		q.Set("filter", filter)
	}
	req := "GET /v1/events?" + q.Encode() + " HTTP/1.1\r\nHost: " + httpAddr +
		"\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return nil, false, err
	}
	br = bufio.NewReaderSize(nc, 4096)
	status, err := br.ReadSlice('\n')
	if err != nil {
		return nil, false, fmt.Errorf("reading status: %w", err)
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200")) {
		return nil, false, fmt.Errorf("status %q", bytes.TrimSpace(status))
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return nil, false, fmt.Errorf("reading headers: %w", err)
		}
		h := strings.ToLower(string(bytes.TrimSpace(line)))
		if h == "" {
			return br, chunked, nil
		}
		if h == "transfer-encoding: chunked" {
			chunked = true
		}
	}
}

var errLongLine = errors.New("line longer than the read buffer")

// read scans the stream line by line. It looks only at data lines (for the
// payload's seq and stamp) and comment lines (heartbeats); it never decodes
// JSON, so that the client costs as little CPU as it can.
func (c *sseConn) read(r *bufio.Reader) {
	defer close(c.done)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				err = errLongLine
			}
			if !c.closed.Load() {
				c.err = err
			}
			return
		}
		switch {
		case len(line) > 6 && string(line[:6]) == "data: ":
			now := time.Now().UnixNano()
			seq, stamp, ok := scanPayload(line[6:])
			if !ok {
				continue
			}
			atomic.AddInt64(&c.received, 1)
			last := c.last.Load()
			if seq <= last {
				c.dups++
			} else {
				c.gaps += int64(seq - last - 1)
				c.last.Store(seq)
			}
			if c.win.has(stamp) {
				c.stamped++
				c.lat = append(c.lat, now-stamp)
			}
			if c.win.has(now) {
				c.inWindow++
			}
		case line[0] == ':':
			c.heartbeats++
		}
	}
}

// close ends the stream from the harness's side.
func (c *sseConn) close() {
	c.closed.Store(true)
	if c.stream != nil {
		c.stream.Close()
	} else {
		c.nc.Close()
	}
	<-c.done
}

func closeSSE(conns []*sseConn) {
	var wg sync.WaitGroup
	for _, c := range conns {
		if c != nil {
			wg.Add(1)
			go func() { defer wg.Done(); c.close() }()
		}
	}
	wg.Wait()
}

// ended reports how many streams the server ended.
func ended(conns []*sseConn) int {
	n := 0
	for _, c := range conns {
		select {
		case <-c.done:
			if !c.closed.Load() {
				n++
			}
		default:
		}
	}
	return n
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// An outcome is how the server answered one request: an HTTP status code
// ("401"), a gRPC code ("INVALID_ARGUMENT"), or noAnswer or closedStatus
// when it did not answer; msg is the error message it gave.
type outcome struct {
	status, msg string
}

const (
	noAnswer     = "no answer" // within the harness's timeout, the connection still open
	closedStatus = "closed"    // the connection ended (or failed) without an answer
)

// A statusTally counts the requests of one kind answered with one status.
type statusTally struct {
	N         int64   `json:"n"`
	MinMicros float64 `json:"minMicros"` // fastest answer, from the request's start
	MaxMicros float64 `json:"maxMicros"`
	Sample    string  `json:"sample,omitempty"` // the first answer's message
}

// A tally collects the outcomes of paced requests. It is safe for
// concurrent use; wait returns once every request added has its outcome.
type tally struct {
	origin   time.Time
	wg       sync.WaitGroup
	mu       sync.Mutex
	statuses map[string]*statusTally
	spans    [][2]int64 // each request's start and end, ns from origin
}

func newTally(origin time.Time) *tally {
	return &tally{origin: origin, statuses: make(map[string]*statusTally)}
}

func (t *tally) record(o outcome, start, end time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := float64(end.Sub(start).Nanoseconds()) / 1e3
	s := t.statuses[o.status]
	if s == nil {
		s = &statusTally{MinMicros: d, MaxMicros: d, Sample: truncate(o.msg, 200)}
		t.statuses[o.status] = s
	}
	s.N++
	s.MinMicros, s.MaxMicros = min(s.MinMicros, d), max(s.MaxMicros, d)
	t.spans = append(t.spans, [2]int64{start.Sub(t.origin).Nanoseconds(), end.Sub(t.origin).Nanoseconds()})
}

func (t *tally) wait() { t.wg.Wait() }

// mostOpen is the largest number of requests that were open at once.
func (t *tally) mostOpen() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return mostOverlapping(t.spans)
}

// mostOverlapping is the largest number of the spans, [start, end), that
// hold one instant.
func mostOverlapping(spans [][2]int64) int {
	type edge struct {
		at    int64
		delta int
	}
	edges := make([]edge, 0, 2*len(spans))
	for _, s := range spans {
		edges = append(edges, edge{s[0], 1}, edge{s[1], -1})
	}
	// An end and a start at the same instant do not overlap.
	slices.SortFunc(edges, func(a, b edge) int {
		if a.at != b.at {
			return int(min(max(a.at-b.at, -1), 1))
		}
		return a.delta - b.delta
	})
	n, most := 0, 0
	for _, e := range edges {
		n += e.delta
		most = max(most, n)
	}
	return most
}

// fire sends rate requests per second from now until stop, the first at
// once, each by send on a goroutine of its own, so that a server that
// answers late does not slow the pace: the rate is what a client chooses,
// not what the server allows. It checks its schedule every tick, as pace
// does, and returns the number sent once the last is sent, not answered
// (t.wait).
func fire(rate float64, stop time.Time, tick time.Duration, send func() outcome, t *tally) int64 {
	start := time.Now()
	tk := time.NewTicker(tick)
	defer tk.Stop()
	var sent int64
	for {
		now := time.Now()
		if !now.Before(stop) {
			return sent
		}
		for due := int64(rate*now.Sub(start).Seconds()) + 1; sent < due; sent++ {
			t.wg.Go(func() {
				t0 := time.Now()
				o := send()
				t.record(o, t0, time.Now())
			})
		}
		<-tk.C
	}
}

// exchangeHTTP sends one request, head (through its blank line) and then
// body, on a new connection from d, and reads the response for at most
// timeout. The body is written while the response is awaited: a server
// that refuses a request before reading its body answers it all the same,
// and a body shorter than its Content-Length keeps the request open, as a
// client that sends slowly would. A text/event-stream response is taken as
// is, its stream unread.
func exchangeHTTP(d *dialer, addr string, head, body []byte, timeout time.Duration) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	nc, err := d.dial(ctx, addr)
	if err != nil {
		return outcome{closedStatus, err.Error()}
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(timeout))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		bufs := net.Buffers{head, body}
		_, _ = bufs.WriteTo(nc) // fails once a server that did not read it all closes
	}()
	defer func() { nc.Close(); <-wrote }()
	resp, err := http.ReadResponse(bufio.NewReaderSize(nc, 4096), nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return outcome{noAnswer, ""}
		}
		return outcome{closedStatus, err.Error()}
	}
	defer resp.Body.Close()
	code := strconv.Itoa(resp.StatusCode)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return outcome{code, "a stream"}
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var e struct{ Message string }
	if json.Unmarshal(msg, &e) == nil && e.Message != "" {
		return outcome{code, e.Message}
	}
	return outcome{code, strings.TrimSpace(string(msg))}
}

// exchangeGRPC calls Publish with req and token, for at most timeout.
func exchangeGRPC(client heraldv1.PublisherServiceClient, req *heraldv1.PublishRequest, token string, timeout time.Duration) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	_, err := client.Publish(ctx, req)
	st := status.Convert(err)
	if st.Code() == codes.DeadlineExceeded && ctx.Err() != nil {
		return outcome{noAnswer, ""}
	}
	return outcome{codeName(st.Code()), st.Message()}
}

// codeName is a gRPC code as the protocol spells it: INVALID_ARGUMENT.
func codeName(c codes.Code) string {
	var b strings.Builder
	prev := 'A'
	for _, r := range c.String() {
		if unicode.IsUpper(r) && unicode.IsLower(prev) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
		prev = r
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Package outagetest checks how a networked broker behaves while its server
// is down and after it comes back: Publish (and Snapshot, for a
// broker.Snapshotter) fails fast with ErrUnavailable and accepts nothing, Healthy reports the outage, the subscription resumes
// where it was and delivers every accepted event once, and the outage is
// logged once, not per call.
package outagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/poll"
)

// Options describe the backend and how to take its server down.
type Options struct {
	// New returns a broker on the server that logs to log, with its call
	// timeout set to Timeout.
	New func(tb testing.TB, log *slog.Logger) broker.Broker
	// Stop stops the server (its data survives); Start starts it again.
	Stop, Start func()
	// Timeout is the broker's call timeout.
	Timeout time.Duration
}

// Log is a log that code under test writes while the test reads it, as
// the outage check reads the broker's: safe for concurrent use.
type Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// Count returns how many times s occurs in the log.
func (l *Log) Count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Run runs the outage check.
func Run(t *testing.T, opts Options) {
	var logs Log
	b := opts.New(t, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var mu sync.Mutex
	var got []uint64
	wake := make(chan struct{}, 1)
	if err := b.Subscribe(ctx, func(ev *broker.Event) {
		mu.Lock()
		got = append(got, ev.Seq)
		mu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
	}); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	var accepted []uint64
	publish := func(i int) error {
		ev := &broker.Event{Topic: fmt.Sprintf("outage.%d", i%3), Type: "t", TypeURL: "type.googleapis.com/t", Payload: []byte{byte(i)}}
		res, err := b.Publish(ctx, ev)
		if err == nil {
			accepted = append(accepted, res.Seq)
		}
		return err
	}
	waitAll := func(what string) {
		t.Helper()
		deadline := time.NewTimer(30 * time.Second)
		defer deadline.Stop()
		for {
			mu.Lock()
			n := len(got)
			mu.Unlock()
			if n >= len(accepted) {
				return
			}
			select {
			case <-wake:
			case <-deadline.C:
				t.Fatalf("%s: %d of %d accepted events delivered", what, n, len(accepted))
			}
		}
	}
	for i := range 10 {
		if err := publish(i); err != nil {
			t.Fatalf("Publish before the outage: %v", err)
		}
	}
	waitAll("before the outage")

	opts.Stop()
	for i := range 5 {
		start := time.Now()
		err := publish(100 + i)
		took := time.Since(start)
		if err == nil {
			t.Fatal("Publish succeeded while the server was down")
		}
		if !errors.Is(err, broker.ErrUnavailable) {
			t.Fatalf("Publish while the server was down: %v; want ErrUnavailable (UNAVAILABLE)", err)
		}
		if took > opts.Timeout+time.Second {
			t.Fatalf("Publish while the server was down took %v; want at most the %v timeout", took, opts.Timeout)
		}
	}
	if hc, ok := b.(broker.HealthChecker); !ok {
		t.Error("the broker is not a broker.HealthChecker")
	} else if err := hc.Healthy(ctx); err == nil {
		t.Error("Healthy reported no error while the server was down")
	}
	if snap, ok := b.(broker.Snapshotter); ok {
		p, err := broker.ParsePattern("outage.>")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = snap.Snapshot(ctx, []broker.Pattern{p}, 10)
		if took := time.Since(start); took > opts.Timeout+time.Second {
			t.Errorf("Snapshot while the server was down took %v; want at most the %v timeout", took, opts.Timeout)
		}
		if !errors.Is(err, broker.ErrUnavailable) {
			t.Errorf("Snapshot while the server was down: %v; want ErrUnavailable", err)
		}
	}

	opts.Start()
	// Publish until the broker takes events again; each failure is one a
	// publisher would retry.
	poll.Until(t, 30*time.Second, "Publish to succeed after the server came back", func() bool { return publish(200) == nil })
	for i := range 20 {
		if err := publish(300 + i); err != nil {
			t.Fatalf("Publish after the server came back: %v", err)
		}
	}
	waitAll("after the outage")
	if hc, ok := b.(broker.HealthChecker); ok {
		if err := hc.Healthy(ctx); err != nil {
			t.Errorf("Healthy after the server came back: %v", err)
		}
	}

	mu.Lock()
	delivered := slices.Clone(got)
	mu.Unlock()
	if !slices.Equal(delivered, accepted) {
		t.Errorf("delivered seqs %v; want exactly the accepted ones, in order: %v", delivered, accepted)
	}
	// Logged once per outage. "broker back" may come a moment after the
	// first successful call.
	poll.Until(t, 10*time.Second, "the recovery to be logged", func() bool { return logs.Count("broker back") >= 1 })
	if n := logs.Count("broker unavailable"); n != 1 {
		t.Errorf("%q logged %d times for one outage; want once:\n%s", "broker unavailable", n, logs.String())
	}
	if n := logs.Count("broker back"); n != 1 {
		t.Errorf("%q logged %d times for one outage; want once:\n%s", "broker back", n, logs.String())
	}
}

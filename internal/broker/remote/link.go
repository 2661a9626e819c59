// Package remote is what every broker across the network needs (NATS
// JetStream, Redis Streams), so that each backend keeps only what is its
// own. A Link bounds each call by the timeout and turns its failure into
// the error the Broker contract names; it notes outages and watches for
// the server's return, logging each once (package outage); it remembers
// that the server's log was reset; it runs the subscriptions' goroutines
// and halts them on Close. Besides: TLS from PEM files, and URLs with
// their secrets hidden for messages. It knows nothing of any backend.
package remote

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/outage"
)

// Options configure a Link. Every field is required but IsTimeout and
// Reset.
type Options struct {
	// Name is the backend in error messages ("<Name>: publish: ..."),
	// e.g. "NATS JetStream".
	Name string
	// LogName is the backend in the outage log lines, e.g. "nats".
	LogName string
	// Timeout bounds each call.
	Timeout time.Duration
	// Logger receives the outage, recovery and reset lines.
	Logger *slog.Logger
	// IsTimeout reports whether an error of the backend's client means
	// that the server did not answer in time.
	IsTimeout func(error) bool
	// Reset returns the error to return for a failure that means the
	// server holds another log (having called Break), or nil for any
	// other failure.
	Reset func(error) error
}

// A Link is a backend's hold on its server. Its methods may be called
// from any goroutine.
type Link struct {
	opts   Options
	outage outage.Log
	closed atomic.Bool
	broken atomic.Pointer[error] // the first reason given to Break

	mu   sync.Mutex // guards subs; Subscribe checks closed under it
	subs map[*Subscription]struct{}

	recheck chan struct{} // wakes the monitor; one slot, so a kick never waits
	stop    chan struct{} // closed by Close
	wg      sync.WaitGroup
}

// New returns a Link; it starts nothing (Start does).
func New(opts Options) *Link {
	l := &Link{
		opts:    opts,
		subs:    make(map[*Subscription]struct{}),
		recheck: make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	l.outage.Logger, l.outage.Broker = opts.Logger, opts.LogName
	l.outage.Settle = settleFor(opts.Timeout)
	return l
}

// settleFor is how long a recovery must last before it is logged, for a
// call timeout of timeout: two timeouts, so that the calls made after the
// health check passed have failed by then if the broker still fails them
// (at least 1 s, at most 10 s).
func settleFor(timeout time.Duration) time.Duration {
	return min(max(2*timeout, time.Second), 10*time.Second)
}

// errClosed is the error of every call after Close.
func errClosed() error { return fmt.Errorf("%w: broker is closed", broker.ErrClosed) }

// Closed reports whether Close was called.
func (l *Link) Closed() bool { return l.closed.Load() }

// Done is closed once Close is called: for a call waiting on an answer
// that closing the client does not end.
func (l *Link) Done() <-chan struct{} { return l.stop }

// Usable returns ErrClosed after Close and the reason given to Break once
// the server turned out to hold another log.
func (l *Link) Usable() error {
	if l.closed.Load() {
		return errClosed()
	}
	return l.Broken()
}

// Broken returns the reason given to Break, or nil.
func (l *Link) Broken() error {
	if err := l.broken.Load(); err != nil {
		return *err
	}
	return nil
}

// Break records that the server holds another log than the one this
// node's epoch names: its sequences mean other events, so the node must
// not go on giving out ids of the old epoch. From then on every call fails
// with the first reason recorded (logged once), until the node restarts.
// It returns that reason.
func (l *Link) Break(reason error) error {
	if l.broken.CompareAndSwap(nil, &reason) {
		l.opts.Logger.Error("broker log was reset: this node refuses to publish and deliver until restarted", "err", reason)
	}
	return *l.broken.Load()
}

// errTimeout is the cause of the contexts that bound each call.
var errTimeout = errors.New("broker call timed out")

// startKey is the context key of when a bounded call began.
type startKey struct{}

// Bound returns ctx bounded by the call timeout, for one call to the
// server.
func (l *Link) Bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return l.BoundSince(ctx, time.Now())
}

// BoundSince is Bound for a call that began at start: ctx ends one call
// timeout after it (at once if that is past).
func (l *Link) BoundSince(ctx context.Context, start time.Time) (context.Context, context.CancelFunc) {
	return context.WithDeadlineCause(context.WithValue(ctx, startKey{}, start), start.Add(l.opts.Timeout), errTimeout)
}

// Expired returns the error to fail a call with that began at start with
// ctx and has not reached the server yet, once ctx ended or the call
// timeout passed (as Fail gives it), and otherwise nil.
func (l *Link) Expired(ctx context.Context, start time.Time, op string) error {
	if !l.Late(ctx, start, time.Now()) {
		return nil
	}
	bounded, cancel := l.BoundSince(ctx, start)
	defer cancel()
	return l.Fail(bounded, op, cmp.Or(bounded.Err(), context.DeadlineExceeded))
}

// Late reports whether, at now, a call that began at start with ctx is
// over: its caller gave up, or the call timeout passed.
func (l *Link) Late(ctx context.Context, start, now time.Time) bool {
	return ctx.Err() != nil || now.Sub(start) >= l.opts.Timeout
}

// Timeout returns the call timeout.
func (l *Link) Timeout() time.Duration { return l.opts.Timeout }

// callStart returns when the call of ctx began, or now.
func callStart(ctx context.Context) time.Time {
	if t, ok := ctx.Value(startKey{}).(time.Time); ok {
		return t
	}
	return time.Now()
}

// Begin starts a call of the Broker interface: it fails as Usable does, or
// with ctx's error once ctx has ended, and otherwise returns ctx bounded
// as by Bound.
func (l *Link) Begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if err := l.Ready(ctx); err != nil {
		return ctx, func() {}, err
	}
	ctx, cancel := l.Bound(ctx)
	return ctx, cancel, nil
}

// Ready fails as Usable does, or with ctx's error once ctx has ended: the
// check of a call that takes its start time and bounds itself later
// (BoundSince, Expired).
func (l *Link) Ready(ctx context.Context) error {
	if err := l.Usable(); err != nil {
		return err
	}
	return ctx.Err()
}

// Call runs f with ctx bounded as by Bound, once the Link is usable; an
// error of f fails the call as Fail does, naming op.
func (l *Link) Call(ctx context.Context, op string, f func(ctx context.Context) error) error {
	if err := l.Usable(); err != nil {
		return err
	}
	ctx, cancel := l.Bound(ctx)
	defer cancel()
	if err := f(ctx); err != nil {
		return l.Fail(ctx, op, err)
	}
	return nil
}

// Fail turns the error of a call to the server, made with a context from
// Bound, into the error to return: ErrClosed after Close; ctx's error when
// the caller's context ended; Reset's error for a reset log; and otherwise
// ErrUnavailable, noted as an outage (which a call begun before the last
// recovery does not start again) and checked by the monitor.
func (l *Link) Fail(ctx context.Context, op string, err error) error {
	if l.closed.Load() {
		return errClosed()
	}
	if cerr := context.Cause(ctx); cerr != nil && !errors.Is(cerr, errTimeout) {
		return fmt.Errorf("%s: %s: %w", l.opts.Name, op, ctx.Err())
	}
	if l.opts.Reset != nil {
		if rerr := l.opts.Reset(err); rerr != nil {
			return rerr
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || l.opts.IsTimeout != nil && l.opts.IsTimeout(err) {
		err = fmt.Errorf("no answer within %v", l.opts.Timeout)
	}
	err = fmt.Errorf("%w: %s: %s: %v", broker.ErrUnavailable, l.opts.Name, op, err)
	l.outage.Down(err, callStart(ctx))
	l.Kick()
	return err
}

// FailSent is Fail for a call that may have reached the server, such as
// an append: when the caller's context ended first, the server may still
// carry the call out, so the error is ErrUnavailable (the outcome is not
// known) wrapping ctx's error, rather than ctx's error alone, which would
// say that nothing happened.
func (l *Link) FailSent(ctx context.Context, op string, err error) error {
	if cerr := context.Cause(ctx); cerr != nil && !errors.Is(cerr, errTimeout) && !l.closed.Load() {
		return fmt.Errorf("%w: %s: %s: %w before the answer came; it may have been carried out", broker.ErrUnavailable, l.opts.Name, op, ctx.Err())
	}
	return l.Fail(ctx, op, err)
}

// Go runs f in a goroutine that Close waits for; f must return soon after
// stop is closed. Call it before Close.
func (l *Link) Go(f func(stop <-chan struct{})) {
	l.wg.Go(func() { f(l.stop) })
}

// Close halts the subscriptions, stops the Link's goroutines and waits
// for them. It reports whether this call closed the Link (false: an
// earlier one did), so that the backend releases its client once.
func (l *Link) Close() bool {
	if !l.closed.CompareAndSwap(false, true) {
		return false
	}
	l.mu.Lock()
	subs := make([]*Subscription, 0, len(l.subs))
	for s := range l.subs {
		subs = append(subs, s)
	}
	l.mu.Unlock()
	for _, s := range subs {
		s.halt()
	}
	close(l.stop)
	l.wg.Wait()
	l.outage.Close()
	return true
}

package client

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
)

// ErrClosed is returned by StreamPublisher.Publish after Close.
var ErrClosed = errors.New("herald client: stream publisher is closed")

// Defaults for StreamOption.
const (
	DefaultMaxInFlight      = 1000
	DefaultReconnectTimeout = time.Minute
)

// A StreamOption configures NewStreamPublisher.
type StreamOption func(*streamOptions)

type streamOptions struct {
	maxInFlight      int
	reconnectTimeout time.Duration
	onResult         func(*Result)
	onReconnect      func(error)
	minBackoff       time.Duration
	maxBackoff       time.Duration
}

// MaxInFlight bounds the events published but not yet resolved
// (acknowledged or failed); Publish blocks while n are (default 1000).
func MaxInFlight(n int) StreamOption {
	return func(o *streamOptions) { o.maxInFlight = n }
}

// ReconnectTimeout bounds how long events wait for a broken stream to be
// re-established (default 1 minute). When it passes, the events pending at
// that moment fail with the last error and the publisher goes on with the
// next ones. Keep it shorter than the server's idempotency window (2
// minutes by default): resent events are recognized as duplicates only
// within it.
func ReconnectTimeout(d time.Duration) StreamOption {
	return func(o *streamOptions) { o.reconnectTimeout = d }
}

// OnResult calls fn for every event once it is resolved, in publish order,
// from the publisher's goroutine: a callback instead of, or besides,
// waiting on Results. fn must not block for long, nor call the publisher.
func OnResult(fn func(*Result)) StreamOption {
	return func(o *streamOptions) { o.onResult = fn }
}

// OnReconnect calls fn with the error that broke the stream each time the
// publisher is about to reconnect, e.g. to log it.
func OnReconnect(fn func(err error)) StreamOption {
	return func(o *streamOptions) { o.onReconnect = fn }
}

// A StreamPublisher publishes events at a high rate over one long-lived
// PublishStream. It is safe for concurrent use.
//
// Guarantees:
//   - Bounded: at most MaxInFlight events are unresolved; Publish blocks
//     (back-pressure) until one resolves or its context ends.
//   - Ordered: events are sent, and accepted by the broker, in the order of
//     the Publish calls that returned them.
//   - Exactly once across reconnects: when the stream breaks (a dropped
//     connection, a server shutting down), the publisher reconnects with
//     backoff and resends every unacknowledged event, in order, with its
//     idempotency key (generated unless given), so an event the server had
//     already accepted is answered with its first id instead of being
//     published twice.
//   - Every event is resolved exactly once: acknowledged with its id,
//     rejected by the server (an error with the server's code:
//     INVALID_ARGUMENT, PERMISSION_DENIED, RESOURCE_EXHAUSTED for the rate
//     limit; a rejected event is not resent, as that would reorder it),
//     failed with the error that ended the stream when it is not worth
//     reconnecting (UNAUTHENTICATED, e.g. an expired token) or after
//     ReconnectTimeout, or failed when the publisher's context ends.
type StreamPublisher struct {
	pub       heraldv1.PublisherServiceClient
	opts      streamOptions
	keyPrefix string
	keySeq    atomic.Uint64

	ctx    context.Context // the publisher's life
	cancel context.CancelFunc
	slots  chan struct{} // one token per unresolved event
	wake   chan struct{} // (cap 1) there may be something to send, or Close was called
	done   chan struct{} // closed when run returns; every event is resolved by then

	mu      sync.Mutex
	queue   []*Result // unresolved events in publish order; queue[:sent] went out on the current stream
	sent    int
	closing bool
	err     error   // why Publish refuses new events: ErrClosed or the context's error
	last    *Result // the newest event, for Flush
}

// NewStreamPublisher starts a publisher. ctx bounds its life: when ctx
// ends, the stream is cut and the events not yet resolved fail. Close it
// to deliver what it holds and release it. The stream is opened when the
// first event is published.
func (c *Client) NewStreamPublisher(ctx context.Context, opts ...StreamOption) (*StreamPublisher, error) {
	o := streamOptions{
		maxInFlight:      DefaultMaxInFlight,
		reconnectTimeout: DefaultReconnectTimeout,
		minBackoff:       50 * time.Millisecond,
		maxBackoff:       2 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxInFlight < 1 {
		return nil, errors.New("herald client: MaxInFlight must be at least 1")
	}
	if o.reconnectTimeout <= 0 {
		return nil, errors.New("herald client: ReconnectTimeout must be positive")
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &StreamPublisher{
		pub:       c.pub,
		opts:      o,
		keyPrefix: newKeyPrefix() + "-",
		ctx:       ctx,
		cancel:    cancel,
		slots:     make(chan struct{}, o.maxInFlight),
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	go p.run()
	return p, nil
}

// A Result is the outcome of one event published on a StreamPublisher: a
// future, resolved once.
type Result struct {
	req  *heraldv1.PublishRequest
	done chan struct{}
	id   string
	err  error
}

// Done is closed once the event is resolved.
func (r *Result) Done() <-chan struct{} { return r.done }

// Wait waits until the event is resolved and returns its id, or its error
// (which carries a gRPC code: see Retryable), or ctx's error if ctx ends
// first.
func (r *Result) Wait(ctx context.Context) (id string, err error) {
	select {
	case <-r.done:
		return r.id, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// ID waits until the event is resolved and returns its id, empty if it
// failed. Every event is resolved eventually (see StreamPublisher).
func (r *Result) ID() string {
	<-r.done
	return r.id
}

// Err waits until the event is resolved and returns why it failed, or nil.
func (r *Result) Err() error {
	<-r.done
	return r.err
}

// Topic returns the event's topic.
func (r *Result) Topic() string { return r.req.GetTopic() }

// IdempotencyKey returns the event's idempotency key: the one given with
// WithIdempotencyKey, or the one generated for it. To publish a failed
// event again, pass it back with WithIdempotencyKey.
func (r *Result) IdempotencyKey() string { return r.req.GetIdempotencyKey() }

// Publish queues msg for topic and returns its Result. It blocks while
// MaxInFlight events are unresolved, until one is or ctx ends (returning
// ctx's error). After Close it returns ErrClosed; after the publisher's
// context ended, that context's error.
func (p *StreamPublisher) Publish(ctx context.Context, topic string, msg proto.Message, opts ...PublishOption) (*Result, error) {
	req, err := newRequest(topic, msg, opts)
	if err != nil {
		return nil, err
	}
	if req.IdempotencyKey == "" {
		req.IdempotencyKey = p.keyPrefix + strconv.FormatUint(p.keySeq.Add(1), 36)
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.done:
		return nil, p.stopped()
	}
	r := &Result{req: req, done: make(chan struct{})}
	p.mu.Lock()
	if p.closing || p.err != nil {
		p.mu.Unlock()
		<-p.slots
		return nil, p.stopped()
	}
	p.queue = append(p.queue, r)
	p.last = r
	p.mu.Unlock()
	p.signal()
	return r, nil
}

// Flush waits until every event published before it is resolved. It
// returns ctx's error if ctx ends first; per-event errors are in the
// Results (or OnResult).
func (p *StreamPublisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	if last == nil {
		return nil
	}
	// Events resolve in publish order, so the last one is resolved last.
	select {
	case <-last.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops accepting events, waits until every event published is
// resolved (which includes reconnecting, within ReconnectTimeout, to
// deliver them), and closes the stream. To give up sooner, cancel the
// context given to NewStreamPublisher. It returns the publisher's context's
// error if that ended first, nil otherwise; it is idempotent.
func (p *StreamPublisher) Close() error {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	p.signal()
	<-p.done
	p.cancel()
	if err := p.stopped(); !errors.Is(err, ErrClosed) {
		return err
	}
	return nil
}

func (p *StreamPublisher) stopped() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	return ErrClosed
}

func (p *StreamPublisher) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run owns the stream: it opens one when there are events to send, serves
// it until it breaks, and reconnects with backoff.
func (p *StreamPublisher) run() {
	defer close(p.done)
	backoff := p.opts.minBackoff
	var brokenSince time.Time // when events started waiting for a working stream
	for {
		if !p.awaitWork() {
			return
		}
		err, acked := p.serve()
		if err == nil { // closed, and everything delivered
			p.stop(ErrClosed)
			return
		}
		if p.ctx.Err() != nil {
			p.stop(p.ctx.Err())
			return
		}
		if acked {
			brokenSince, backoff = time.Time{}, p.opts.minBackoff
		}
		now := time.Now()
		if brokenSince.IsZero() {
			brokenSince = now
		}
		if !retryableStream(err) || now.Sub(brokenSince) >= p.opts.reconnectTimeout {
			p.failPending(err)
			brokenSince, backoff = time.Time{}, p.opts.minBackoff
			continue
		}
		if p.opts.onReconnect != nil {
			p.opts.onReconnect(err)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, p.opts.maxBackoff)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-p.ctx.Done():
			t.Stop()
			p.stop(p.ctx.Err())
			return
		}
	}
}

// awaitWork waits until there are events to send. It returns false once
// the publisher is closed with nothing left, or its context ended.
func (p *StreamPublisher) awaitWork() bool {
	for {
		p.mu.Lock()
		n, closing := len(p.queue), p.closing
		p.mu.Unlock()
		switch {
		case n > 0:
			return true
		case closing:
			p.stop(ErrClosed)
			return false
		}
		select {
		case <-p.wake:
		case <-p.ctx.Done():
			p.stop(p.ctx.Err())
			return false
		}
	}
}

// serve sends the pending events, in order, on a new stream and then
// whatever is published, until the stream breaks (returning why, and
// whether any event was acknowledged) or the publisher is closed and
// drained (returning nil). It returns only after its receiver has.
func (p *StreamPublisher) serve() (err error, acked bool) {
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	stream, err := p.pub.PublishStream(ctx)
	if err != nil {
		return err, false
	}
	p.mu.Lock()
	p.sent = 0 // resend everything unacknowledged
	p.mu.Unlock()

	var progress atomic.Bool
	recvErr := make(chan error, 1)
	go func() { recvErr <- p.receive(stream, &progress) }()

	for {
		p.mu.Lock()
		var next *Result
		if p.sent < len(p.queue) {
			next = p.queue[p.sent]
			p.sent++
		}
		drained := p.closing && len(p.queue) == 0
		p.mu.Unlock()

		switch {
		case next != nil:
			if err := stream.Send(next.req); err != nil {
				// io.EOF: the stream broke and Recv returns its status;
				// cancelling first would replace that with CANCELED.
				// Anything else was made here and aborted the stream.
				if errors.Is(err, io.EOF) {
					err = <-recvErr
				} else {
					cancel()
					<-recvErr
				}
				return streamErr(err), progress.Load()
			}
		case drained:
			_ = stream.CloseSend()
			<-recvErr // nothing is pending, so how it ends changes nothing
			return nil, progress.Load()
		default:
			select {
			case <-p.wake:
			case err := <-recvErr:
				return streamErr(err), progress.Load()
			}
		}
	}
}

// receive resolves events as their responses arrive, in order.
func (p *StreamPublisher) receive(stream heraldv1.PublisherService_PublishStreamClient, progress *atomic.Bool) error {
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		p.mu.Lock()
		if p.sent == 0 {
			p.mu.Unlock()
			return status.Error(codes.Internal, "herald client: PublishStream answered an event that was not sent")
		}
		r := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.sent--
		p.mu.Unlock()
		progress.Store(true)
		if e := resp.GetError(); e != nil {
			p.resolve(r, "", eventError(e))
		} else {
			p.resolve(r, resp.GetId(), nil)
		}
		p.signal()
	}
}

func (p *StreamPublisher) resolve(r *Result, id string, err error) {
	r.id, r.err = id, err
	close(r.done)
	<-p.slots
	if p.opts.onResult != nil {
		p.opts.onResult(r)
	}
}

// failPending fails every unresolved event with err, in order.
func (p *StreamPublisher) failPending(err error) {
	p.mu.Lock()
	q := p.queue
	p.queue, p.sent = nil, 0
	p.mu.Unlock()
	for _, r := range q {
		p.resolve(r, "", err)
	}
}

// stop refuses new events with err and fails those still pending.
func (p *StreamPublisher) stop(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
	if !errors.Is(err, ErrClosed) {
		err = status.FromContextError(err).Err()
	}
	p.failPending(err)
}

// streamErr turns an unexpected clean end of the stream into a retryable
// error: the server closes it only after the client did.
func streamErr(err error) error {
	if errors.Is(err, io.EOF) {
		return status.Error(codes.Unavailable, "herald client: PublishStream ended early")
	}
	return err
}

// retryableStream reports whether a broken PublishStream is worth
// reconnecting: the connection or the server went away.
func retryableStream(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted:
		return true
	}
	return false
}

// eventError is a PublishStream event's rejection as a gRPC status error,
// with the server's retry delay as a RetryInfo detail, as a unary Publish
// carries it, so that Retryable and RetryDelay read both alike.
func eventError(e *heraldv1.PublishError) error {
	st := status.New(codes.Code(e.GetCode()), e.GetMessage())
	if d := e.GetRetryDelay(); d != nil {
		if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: d}); err == nil {
			st = withInfo
		}
	}
	return st.Err()
}

// Package jetstream is Herald's NATS JetStream broker: several Herald nodes
// share one JetStream stream, so an event published on any node reaches the
// subscribers of every node, and an event id given out by one node resumes
// on any other.
//
// # Layout
//
// One stream, named after the prefix (Options.Prefix "herald" → stream
// "HERALD"), holds every event, on the subject "<prefix>.ev.<topic>". Topic
// tokens ([A-Za-z0-9_-]) are subject tokens as they are, and a subscriber's
// patterns are subject filters as they are ("*" and ">" mean the same).
// Pushed schemas live in a second stream, "<STREAM>_SCHEMAS", one message per
// registration, kept forever.
//
// # Ids
//
// Seq is the stream sequence: one total order across all topics, the same
// for every node, assigned by the stream's leader. The epoch is the stream's
// creation time in base 36: a stream that is deleted and created again is
// another log, with another epoch, and ids of the old one get a gap.
//
// # Retention and Truncated
//
// Retention maps onto the stream's own limits: MaxMsgsPerSubject (events per
// topic) and MaxAge. Both remove a topic's oldest events first, so what a
// topic retains is always the tail of its history. To tell exactly whether a
// resume lost anything, every event carries a header, Herald-Prev, with the
// sequence of the previous event on its topic; Publish keeps the chain exact
// with Nats-Expected-Last-Subject-Sequence (the stream refuses an event whose
// predecessor is not the one named, and Publish retries with the right one).
// Replay after position P then knows, for each topic it returns events of,
// whether an event after P was removed: the first returned event's
// Herald-Prev is > P. The first event of a topic with nothing retained (new,
// or aged out entirely) chains to just below the stream's first sequence,
// an upper bound of its real predecessor. For a topic none of whose events
// is returned, events
// removed by age all lie below the stream's first sequence, so Replay
// reports Truncated when P+1 is below it and a pattern may match such a
// topic (a wildcard, or a literal topic with nothing returned): cautious, as
// the contract allows, and exact for the common resume from a recent id.
//
// The cost of the chain is that publishes to one topic are serialized per
// node (one round trip each: about 4,000 events/s per topic and node with
// the server on the same host, BenchmarkPublish; topics publish in
// parallel), and that two nodes publishing to the
// same topic at the same instant cost the loser one more round trip.
//
// # Idempotency
//
// An idempotency key becomes the message id (Nats-Msg-Id) "<topic> <quoted
// key>", de-duplicated by the stream within its Duplicates window
// (Options.IdempotencyWindow, at most MaxAge). A duplicate's PubAck carries
// the original's sequence.
//
// # Fan-in
//
// Each Subscribe (the hub makes one per node) is one ordered consumer on
// "<prefix>.ev.>", in stream order, starting after the stream's last
// sequence at the time of the call. nats.go recreates it after a disconnect
// or a lost consumer, from the last sequence it returned + 1: nothing is
// lost or delivered twice. The server sends each event once per node, not
// once per browser: 3 nodes with 10,000 browsers each on one topic at 1,000
// events/s read 3,000 messages/s from NATS, not 30,000,000.
//
// # Failures
//
// Every call is bounded by Options.Timeout. While NATS is unreachable the
// client buffers nothing (a reconnect buffer would turn a failed publish into
// a late one): Publish fails at once with broker.ErrUnavailable, and Healthy
// reports the outage. The first failure logs "broker unavailable", recovery
// logs "broker back", once per outage; reconnection is the client's, with
// backoff and jitter.
package jetstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/outage"
	"github.com/heraldhq/herald/internal/broker/wire"
)

// Options configure a Broker. Zero values mean the defaults. Every node
// sharing a stream must use the same Prefix and retention: the last node to
// start applies its settings to the stream.
type Options struct {
	// URL is the NATS server, or a comma-separated list of a cluster's
	// servers (default nats://127.0.0.1:4222). User and password may be
	// given in it (nats://user:pass@host:4222).
	URL string
	// CredsFile is a NATS credentials file (JWT and NKey seed).
	CredsFile string
	// User and Password authenticate with a user name and password.
	User, Password string
	// Token authenticates with a token.
	Token string
	// TLSCAFile is a PEM file of the CAs that sign the server's certificate
	// (default: the system's roots). Setting any TLS field turns TLS on.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are a client certificate and its key, for
	// servers that verify clients.
	TLSCertFile, TLSKeyFile string
	// TLSInsecureSkipVerify accepts any server certificate. For tests only.
	TLSInsecureSkipVerify bool

	// Prefix names the stream ("herald" → stream HERALD, subjects
	// herald.ev.>, schemas in HERALD_SCHEMAS). Default "herald".
	Prefix string
	// Replicas is the streams' replication factor (1, 3 or 5; default 1).
	Replicas int
	// MaxEvents is how many events each topic retains (default 1000).
	MaxEvents int
	// MaxAge is how long an event is retained (default 1h).
	MaxAge time.Duration
	// IdempotencyWindow is how long an idempotency key is remembered
	// (default 2m; JetStream caps it at MaxAge).
	IdempotencyWindow time.Duration
	// Timeout bounds each call to NATS (default 3s).
	Timeout time.Duration
	// Name is the connection's name as the server shows it (default
	// "herald").
	Name string
	// Logger receives outage and recovery lines (default slog.Default()).
	Logger *slog.Logger
}

// Defaults for Options.
const (
	DefaultURL               = "nats://127.0.0.1:4222"
	DefaultPrefix            = "herald"
	DefaultMaxEvents         = 1000
	DefaultMaxAge            = time.Hour
	DefaultIdempotencyWindow = 2 * time.Minute
	DefaultTimeout           = 3 * time.Second
)

// prevHeader carries the sequence of the previous event on the same topic.
const prevHeader = "Herald-Prev"

// Broker is a broker.Broker on a JetStream stream. Its zero value is not
// usable; call New.
type Broker struct {
	opts       Options
	log        *slog.Logger
	nc         *nats.Conn
	js         natsjs.JetStream
	stream     natsjs.Stream
	schemas    natsjs.Stream
	streamName string
	subjPrefix string // "<prefix>.ev."
	schemaSubj string
	created    time.Time
	epoch      string

	closed atomic.Bool
	broken atomic.Pointer[error] // set once the stream turned out to be another log

	mu     sync.Mutex // guards subs and topics
	subs   map[*subscription]struct{}
	topics map[string]*topicState

	outage  outage.Log
	recheck chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
}

var (
	_ broker.Broker        = (*Broker)(nil)
	_ broker.HealthChecker = (*Broker)(nil)
	_ broker.SchemaStore   = (*Broker)(nil)
)

// topicState serializes this node's publishes to one topic and remembers
// the topic's last sequence, for the Herald-Prev chain.
type topicState struct {
	lock  chan struct{} // a one-slot semaphore, so that waiting honours ctx
	refs  int           // publishes holding or waiting for lock; guarded by Broker.mu
	last  uint64        // guarded by lock
	known bool          // last is known; guarded by lock
}

// New connects to NATS, creates the streams or brings their settings up to
// date, and returns a running broker; Close releases it.
func New(ctx context.Context, opts Options) (*Broker, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	b := &Broker{
		opts:       opts,
		log:        opts.Logger,
		streamName: streamName(opts.Prefix),
		subjPrefix: opts.Prefix + ".ev.",
		schemaSubj: opts.Prefix + ".schemas",
		subs:       make(map[*subscription]struct{}),
		topics:     make(map[string]*topicState),
		recheck:    make(chan struct{}, 1),
		stop:       make(chan struct{}),
	}
	b.outage.Logger, b.outage.Broker = b.log, "nats"
	copts, err := b.connectOptions()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(opts.URL, copts...)
	if err != nil {
		return nil, fmt.Errorf("%w: connecting to NATS at %s: %v", broker.ErrUnavailable, redactURL(opts.URL), err)
	}
	b.nc = nc
	if b.js, err = natsjs.New(nc, natsjs.WithDefaultTimeout(opts.Timeout)); err != nil {
		nc.Close()
		return nil, err
	}
	if err := b.setUp(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	b.wg.Add(1)
	go b.monitor()
	return b, nil
}

func (o *Options) setDefaults() error {
	if o.URL == "" {
		o.URL = DefaultURL
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if err := broker.ValidateTopic(o.Prefix); err != nil || strings.Contains(o.Prefix, ".") {
		return fmt.Errorf("jetstream: Prefix %q must be one token of A-Z a-z 0-9 _ -", o.Prefix)
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Replicas > 5 {
		return fmt.Errorf("jetstream: Replicas is %d; JetStream allows at most 5", o.Replicas)
	}
	if o.MaxEvents <= 0 {
		o.MaxEvents = DefaultMaxEvents
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.IdempotencyWindow <= 0 {
		o.IdempotencyWindow = DefaultIdempotencyWindow
	}
	o.IdempotencyWindow = min(o.IdempotencyWindow, o.MaxAge)
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Name == "" {
		o.Name = "herald"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return errors.New("jetstream: TLSCertFile and TLSKeyFile go together")
	}
	return nil
}

func streamName(prefix string) string {
	return strings.ToUpper(strings.ReplaceAll(prefix, "-", "_"))
}

func (b *Broker) connectOptions() ([]nats.Option, error) {
	o := b.opts
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.Timeout(o.Timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		// No reconnect buffer: a publish while disconnected fails at once
		// instead of going out later, after its caller was told it failed.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if !b.closed.Load() {
				b.outage.Down(fmt.Errorf("disconnected from NATS: %v", err), time.Now())
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { b.kick() }),
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.User != "" || o.Password != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.TLSCAFile != "" || o.TLSCertFile != "" || o.TLSInsecureSkipVerify {
		cfg, err := tlsConfig(o.TLSCAFile, o.TLSCertFile, o.TLSKeyFile, o.TLSInsecureSkipVerify)
		if err != nil {
			return nil, fmt.Errorf("jetstream: %w", err)
		}
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
}

// tlsConfig builds a client TLS configuration from PEM files.
func tlsConfig(caFile, certFile, keyFile string, insecure bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} //nolint:gosec // opt-in, for tests
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA file %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// setUp creates or updates the streams and reads the epoch.
func (b *Broker) setUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 4*b.opts.Timeout)
	defer cancel()
	o := b.opts
	stream, err := b.js.CreateOrUpdateStream(ctx, natsjs.StreamConfig{
		Name:              b.streamName,
		Description:       "Herald events: one subject per topic, " + b.subjPrefix + "<topic>",
		Subjects:          []string{b.subjPrefix + ">"},
		Retention:         natsjs.LimitsPolicy,
		MaxMsgsPerSubject: int64(o.MaxEvents),
		MaxAge:            o.MaxAge,
		Duplicates:        o.IdempotencyWindow,
		Discard:           natsjs.DiscardOld,
		Storage:           natsjs.FileStorage,
		Replicas:          o.Replicas,
		AllowDirect:       true,
	})
	if err != nil {
		return fmt.Errorf("%w: creating stream %s: %v", broker.ErrUnavailable, b.streamName, err)
	}
	b.stream = stream
	b.created = stream.CachedInfo().Created
	b.epoch = epochOf(b.created)
	b.schemas, err = b.js.CreateOrUpdateStream(ctx, natsjs.StreamConfig{
		Name:        b.streamName + "_SCHEMAS",
		Description: "Herald schemas pushed at run time, one registration per message, in order",
		Subjects:    []string{b.schemaSubj},
		Retention:   natsjs.LimitsPolicy,
		Storage:     natsjs.FileStorage,
		Replicas:    o.Replicas,
		AllowDirect: true,
	})
	if err != nil {
		return fmt.Errorf("%w: creating stream %s_SCHEMAS: %v", broker.ErrUnavailable, b.streamName, err)
	}
	if mp := b.nc.MaxPayload(); mp < int64(1<<20)+64<<10 {
		b.log.Warn("the NATS server's max_payload is below 1 MiB plus headers: larger events will be refused; raise max_payload or lower --max-event-bytes", "max_payload", mp)
	}
	return nil
}

// epochOf turns the stream's creation time into an epoch: base 36 of its
// Unix nanoseconds, 13 bytes of [a-z0-9].
func epochOf(created time.Time) string {
	return strconv.FormatUint(uint64(created.UnixNano()), 36)
}

// Epoch implements broker.Broker.
func (b *Broker) Epoch() string { return b.epoch }

// Healthy implements broker.HealthChecker: the connection is up and the
// stream answers, and it is still the stream the epoch names.
func (b *Broker) Healthy(ctx context.Context) error {
	if err := b.usable(); err != nil {
		return err
	}
	if st := b.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w: NATS connection is %v", broker.ErrUnavailable, st)
	}
	ctx, cancel := b.bounded(ctx)
	defer cancel()
	info, err := b.stream.Info(ctx)
	if err != nil {
		return b.fail(ctx, "stream info", err)
	}
	return b.checkCreated(info.Created)
}

// usable returns ErrClosed after Close and the reason once the stream
// turned out to be another log.
func (b *Broker) usable() error {
	if b.closed.Load() {
		return fmt.Errorf("%w: broker is closed", broker.ErrClosed)
	}
	if err := b.broken.Load(); err != nil {
		return *err
	}
	return nil
}

// checkCreated compares the stream's creation time with the one the epoch
// was taken from. A stream deleted and created again is another log: its
// sequences mean other events, so this node must not go on giving out ids
// of the old epoch. It refuses every call until restarted.
func (b *Broker) checkCreated(created time.Time) error {
	if created.Equal(b.created) {
		return nil
	}
	err := fmt.Errorf("%w: stream %s was deleted and created again (epoch %s, now %s): restart this node",
		broker.ErrUnavailable, b.streamName, b.epoch, epochOf(created))
	if b.broken.CompareAndSwap(nil, &err) {
		b.log.Error("broker log was reset: this node refuses to publish and deliver until restarted", "err", err)
	}
	return *b.broken.Load()
}

// fail turns an error of a NATS call into the error to return: ErrClosed
// after Close, ctx's error when the caller's context ended, and otherwise
// ErrUnavailable, noted as an outage.
func (b *Broker) fail(ctx context.Context, op string, err error) error {
	if b.closed.Load() {
		return fmt.Errorf("%w: broker is closed", broker.ErrClosed)
	}
	if cerr := context.Cause(ctx); cerr != nil && !errors.Is(cerr, errTimeout) {
		return fmt.Errorf("NATS JetStream: %s: %w", op, ctx.Err())
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		err = fmt.Errorf("no answer within %v", b.opts.Timeout)
	}
	err = fmt.Errorf("%w: NATS JetStream: %s: %v", broker.ErrUnavailable, op, err)
	b.outage.Down(err, callStart(ctx))
	b.kick()
	return err
}

// errTimeout is the cause of the contexts that bound each call.
var errTimeout = errors.New("broker call timed out")

// bounded returns ctx bounded by the call timeout.
func (b *Broker) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(context.WithValue(ctx, startKey{}, time.Now()), b.opts.Timeout, errTimeout)
}

// startKey is the context key of when a bounded call began.
type startKey struct{}

// callStart returns when the call of ctx began, or now.
func callStart(ctx context.Context) time.Time {
	if t, ok := ctx.Value(startKey{}).(time.Time); ok {
		return t
	}
	return time.Now()
}

// kick asks the monitor to check the stream soon.
// confirm notes a successful call: during an outage, the monitor checks
// whether the broker is back (and says so, once).
func (b *Broker) confirm() {
	if b.outage.Out() {
		b.kick()
	}
}

func (b *Broker) kick() {
	select {
	case b.recheck <- struct{}{}:
	default:
	}
}

// monitor confirms recovery after a failure: it polls the stream, with
// backoff, until it answers, then logs "broker back" (once per outage), and
// it notices a stream that was created again.
func (b *Broker) monitor() {
	defer b.wg.Done()
	for {
		select {
		case <-b.stop:
			return
		case <-b.recheck:
		}
		wait := 100 * time.Millisecond
		for {
			started := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), b.opts.Timeout)
			info, err := b.stream.Info(ctx)
			cancel()
			if err == nil {
				if b.checkCreated(info.Created) == nil {
					b.outage.Up()
				}
				break
			}
			if b.closed.Load() {
				return
			}
			b.outage.Down(fmt.Errorf("stream info: %v", err), started)
			select {
			case <-b.stop:
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 5*time.Second)
		}
	}
}

// Publish implements broker.Broker. It returns once the stream acknowledged
// the event (stored on a quorum of replicas).
func (b *Broker) Publish(ctx context.Context, ev *broker.Event) (broker.PublishResult, error) {
	if err := b.usable(); err != nil {
		return broker.PublishResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return broker.PublishResult{}, err
	}
	ctx, cancel := b.bounded(ctx)
	defer cancel()
	ts, err := b.lockTopic(ctx, ev.Topic)
	if err != nil {
		return broker.PublishResult{}, b.fail(ctx, "publish", err)
	}
	defer b.unlockTopic(ev.Topic, ts)

	ev.Time = time.Now()
	msg := nats.NewMsg(b.subjPrefix + ev.Topic)
	msg.Data = wire.Append(make([]byte, 0, wire.Size(ev)), ev)
	var msgID string
	if ev.IdempotencyKey != "" {
		msgID = ev.Topic + " " + strconv.Quote(ev.IdempotencyKey)
	}
	for attempt := 0; ; attempt++ {
		if !ts.known {
			if err := b.loadLast(ctx, ev.Topic, ts); err != nil {
				return broker.PublishResult{}, err
			}
		}
		prev := ts.last
		if prev == 0 {
			// The topic is new, or everything it had aged out: its
			// previous event, if any, lies below the stream's first
			// sequence. Chain to just below it, which errs on the
			// side of a gap and never of silence.
			info, err := b.stream.Info(ctx)
			if err != nil {
				return broker.PublishResult{}, b.fail(ctx, "publish", err)
			}
			prev = max(info.State.FirstSeq, 1) - 1
		}
		msg.Header.Set(prevHeader, strconv.FormatUint(prev, 10))
		opts := []natsjs.PublishOpt{natsjs.WithExpectLastSequencePerSubject(ts.last)}
		if msgID != "" {
			opts = append(opts, natsjs.WithMsgID(msgID))
		}
		ack, err := b.js.PublishMsg(ctx, msg, opts...)
		if err == nil {
			b.confirm()
			if ack.Duplicate {
				return broker.PublishResult{Seq: ack.Sequence, Duplicate: true}, nil
			}
			ts.last = ack.Sequence
			ev.Seq = ack.Sequence
			return broker.PublishResult{Seq: ack.Sequence}, nil
		}
		var apiErr *natsjs.APIError
		switch {
		case errors.As(err, &apiErr) && apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequence:
			// Another node published to the topic: the error names the
			// topic's last sequence; chain to it.
			ts.known = false
			if n, ok := strings.CutPrefix(apiErr.Description, "wrong last sequence: "); ok {
				if seq, perr := strconv.ParseUint(n, 10, 64); perr == nil {
					ts.last, ts.known = seq, true
				}
			}
		case errors.As(err, &apiErr) && apiErr.ErrorCode == natsjs.JSErrCodeStreamWrongLastSequenceConstant:
			ts.known = false // a replicated stream does not say which
		case errors.Is(err, nats.ErrMaxPayload):
			return broker.PublishResult{}, fmt.Errorf("%w: %d bytes with headers are more than the NATS server's max_payload (%d)",
				broker.ErrEventTooLarge, len(msg.Data), b.nc.MaxPayload())
		default:
			return broker.PublishResult{}, b.fail(ctx, "publish", err)
		}
		if attempt >= 3 {
			// Contention on a hot topic: back off a little, with jitter,
			// until the deadline.
			select {
			case <-ctx.Done():
				return broker.PublishResult{}, b.fail(ctx, "publish", ctx.Err())
			case <-time.After(time.Duration(attempt%8+1) * time.Millisecond):
			}
		}
	}
}

// loadLast reads the topic's last sequence from the stream.
func (b *Broker) loadLast(ctx context.Context, topic string, ts *topicState) error {
	m, err := b.stream.GetLastMsgForSubject(ctx, b.subjPrefix+topic)
	switch {
	case errors.Is(err, natsjs.ErrMsgNotFound):
		ts.last = 0
	case err != nil:
		return b.fail(ctx, "last event of topic", err)
	default:
		ts.last = m.Sequence
	}
	ts.known = true
	return nil
}

// maxTopicStates bounds how many topics' last sequences a node remembers.
const maxTopicStates = 10000

func (b *Broker) lockTopic(ctx context.Context, topic string) (*topicState, error) {
	b.mu.Lock()
	ts := b.topics[topic]
	if ts == nil {
		if len(b.topics) >= maxTopicStates {
			for name, t := range b.topics {
				if t.refs == 0 {
					delete(b.topics, name)
				}
			}
		}
		ts = &topicState{lock: make(chan struct{}, 1)}
		b.topics[topic] = ts
	}
	ts.refs++
	b.mu.Unlock()
	select {
	case ts.lock <- struct{}{}:
		return ts, nil
	case <-ctx.Done():
		b.mu.Lock()
		ts.refs--
		b.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (b *Broker) unlockTopic(_ string, ts *topicState) {
	<-ts.lock
	b.mu.Lock()
	ts.refs--
	b.mu.Unlock()
}

// Close implements broker.Broker.
func (b *Broker) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	b.mu.Lock()
	subs := make([]*subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	for _, s := range subs {
		s.halt()
	}
	close(b.stop)
	b.wg.Wait()
	b.nc.Close()
	return nil
}

// redactURL hides passwords in a URL list for messages.
func redactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "***@" + p[at+1:]
			}
		}
	}
	return strings.Join(parts, ",")
}

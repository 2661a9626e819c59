// Package redis is Herald's Redis Streams broker: several Herald nodes share
// one Redis, so an event published on any node reaches the subscribers of
// every node, and an event id given out by one node resumes on any other.
//
// # Layout
//
// Every key starts with "{<prefix>}:" (Options.Prefix, default "herald"); the
// braces are a Redis Cluster hash tag, keeping the keys one script touches
// in one slot.
//
//	{p}:epoch     the log's epoch, created with SET NX by the first node
//	{p}:seq       the last sequence given out (INCR)
//	{p}:t:<topic> one stream per topic, entry id "<seq>-0", fields t (µs) and e (the event)
//	{p}:all       the fan-in stream: every event, fields s (seq), t and e, kept for FanInWindow
//	{p}:topics    topic names (sorted set, score 0: prefix lookups by ZRANGEBYLEX)
//	{p}:touched   topic → time of its last publish (for forgetting idle topics)
//	{p}:cut       topic → highest sequence retention removed from it
//	{p}:cutfloor  marks folded away to bound {p}:cut
//	{p}:idem:<topic>\x00<key>   idempotency keys: the original's sequence, expiring after the window
//	{p}:schemas   pushed schema registrations, a list
//
// # Publish
//
// One Lua script (EVALSHA) does everything atomically: it checks the epoch
// key, looks up the idempotency key (GET; SET PX after the append), takes
// the next sequence (INCR), reads the server clock (TIME), appends the event
// to its topic stream and to the fan-in stream, trims the topic by count
// (exact) and by age (the oldest entries, a bounded batch per call), and
// records the highest sequence trimmed. Seq is thus one total order across
// all topics for every node, and Publish returns after Redis executed the
// script: as durable as the server's persistence (appendonly yes with
// appendfsync everysec or always).
//
// Cost per publish: one round trip; inside Redis about ten O(1)/O(log n)
// commands, and the event stored twice, once in its topic (MaxEvents per
// topic) and once in the fan-in stream, which only holds the last
// FanInWindow (default 1m; at 1,000 events/s of 1 KiB that is about 60 MB).
//
// # Epoch
//
// The epoch is a random value created with SET NX by the first node to
// start. A Redis that loses its data (no persistence, FLUSHALL) comes back
// without it: nodes running then refuse to publish and deliver (the script
// checks the epoch atomically) and report unhealthy until restarted, and a
// node that starts creates a new epoch, so old ids get a gap.
//
// # Retention and Truncated
//
// Count and age retention remove a topic's oldest events, and the script
// records per topic the highest sequence it removed ({p}:cut). Events older
// than MaxAge that no publish has trimmed yet are skipped by Replay, and a
// sweeper on every node deletes topics whose last event aged out, recording
// their last sequence. Replay after position P is Truncated exactly when a
// matching topic's mark is above P, or an aged event after P was skipped;
// beyond 100,000 marks the lowest fold into {p}:cutfloor, and a position
// below it is Truncated for any pattern (cautious, as the contract allows).
//
// # Fan-in
//
// Each Subscribe (the hub makes one per node) is one XREAD BLOCK loop on the
// fan-in stream, on a connection of its own, from the entry that was last
// when Subscribe was called. Sequences in the fan-in stream are contiguous,
// so a node that was away longer than FanInWindow notices the jump and reads
// the missing events from the topic streams before going on: nothing is
// lost or delivered twice while retention still holds them. Redis sends
// each event once per node, not once per browser: 3 nodes with 10,000
// browsers each on one topic at 1,000 events/s read 3,000 entries/s.
//
// # Replay
//
// Replay finds the matching topics (a literal is its own key; a wildcard
// pattern reads the names under its literal prefix with ZRANGEBYLEX and
// matches them), then reads in one MULTI/EXEC the server clock, the epoch,
// XRANGE from P+1 of every matching topic and the cut marks above P, and
// merges the topics by sequence.
//
// # Failures
//
// Every call is bounded by Options.Timeout, and go-redis does not retry
// (a retried script might append twice). While Redis is unreachable Publish
// fails at once with broker.ErrUnavailable, Healthy reports it, and the
// first failure logs "broker unavailable"; a monitor pings with backoff and
// logs "broker back" when Redis answers again with the same epoch.
// Subscriptions retry XREAD with backoff and resume from the last entry
// they delivered.
//
// Redis Cluster and Sentinel are not supported: every key lives in one slot
// anyway, as one log needs one sequence.
package redis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/outage"
	"github.com/heraldhq/herald/internal/broker/wire"
)

// Options configure a Broker. Zero values mean the defaults. Every node
// sharing a Redis must use the same Prefix and retention.
type Options struct {
	// URL is the Redis server: redis://[user:password@]host:port/db, or
	// rediss:// for TLS (default redis://127.0.0.1:6379/0).
	URL string
	// Username and Password, when set, override those of the URL (Redis 6
	// ACL user, or the requirepass password with no user).
	Username, Password string
	// TLSCAFile is a PEM file of the CAs that sign the server's certificate
	// (default: the system's roots). Setting any TLS field turns TLS on.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are a client certificate and its key.
	TLSCertFile, TLSKeyFile string
	// TLSInsecureSkipVerify accepts any server certificate. For tests only.
	TLSInsecureSkipVerify bool

	// Prefix starts every key, as "{prefix}:" (default "herald").
	Prefix string
	// MaxEvents is how many events each topic retains (default 1000).
	MaxEvents int
	// MaxAge is how long an event is retained (default 1h).
	MaxAge time.Duration
	// IdempotencyWindow is how long an idempotency key is remembered
	// (default 2m).
	IdempotencyWindow time.Duration
	// FanInWindow is how long the fan-in stream keeps events for nodes
	// that reconnect (default 1m). A node away for longer catches up from
	// the topic streams instead, which costs more.
	FanInWindow time.Duration
	// Timeout bounds each call to Redis (default 3s).
	Timeout time.Duration
	// Logger receives outage and recovery lines (default slog.Default()).
	Logger *slog.Logger
}

// Defaults for Options.
const (
	DefaultURL               = "redis://127.0.0.1:6379/0"
	DefaultPrefix            = "herald"
	DefaultMaxEvents         = 1000
	DefaultMaxAge            = time.Hour
	DefaultIdempotencyWindow = 2 * time.Minute
	DefaultFanInWindow       = time.Minute
	DefaultTimeout           = 3 * time.Second
)

// maxCutMarks bounds the per-topic removal marks kept one by one.
const maxCutMarks = 100_000

// Broker is a broker.Broker on Redis Streams. Its zero value is not usable;
// call New.
type Broker struct {
	opts   Options
	log    *slog.Logger
	copts  *goredis.Options // for the subscriptions' own clients
	rdb    *goredis.Client
	epoch  string
	keys   keys
	closed atomic.Bool
	broken atomic.Pointer[error]

	mu   sync.Mutex // guards subs
	subs map[*subscription]struct{}

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

type keys struct {
	epoch, seq, all, topics, touched, cut, cutFloor, schemas string
	topicPrefix, idemPrefix                                  string
}

func newKeys(prefix string) keys {
	p := "{" + prefix + "}:"
	return keys{
		epoch: p + "epoch", seq: p + "seq", all: p + "all", topics: p + "topics",
		touched: p + "touched", cut: p + "cut", cutFloor: p + "cutfloor", schemas: p + "schemas",
		topicPrefix: p + "t:", idemPrefix: p + "idem:",
	}
}

func (k keys) topic(t string) string { return k.topicPrefix + t }

// New connects to Redis, creates the epoch if this is the first node, and
// returns a running broker; Close releases it.
func New(ctx context.Context, opts Options) (*Broker, error) {
	quietOnce.Do(func() { goredis.SetLogger(quietLogger{}) })
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	copts, err := opts.clientOptions()
	if err != nil {
		return nil, err
	}
	b := &Broker{
		opts:    opts,
		log:     opts.Logger,
		copts:   copts,
		rdb:     goredis.NewClient(copts),
		keys:    newKeys(opts.Prefix),
		subs:    make(map[*subscription]struct{}),
		recheck: make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	b.outage.Logger, b.outage.Broker = b.log, "redis"
	ctx, cancel := context.WithTimeout(ctx, 2*opts.Timeout)
	defer cancel()
	epoch, err := b.rdb.SetArgs(ctx, b.keys.epoch, broker.NewEpoch(), goredis.SetArgs{Mode: "NX", Get: true}).Result()
	if errors.Is(err, goredis.Nil) {
		epoch, err = b.rdb.Get(ctx, b.keys.epoch).Result()
	}
	if err != nil {
		b.rdb.Close()
		return nil, fmt.Errorf("%w: Redis at %s: %v", broker.ErrUnavailable, redactURL(opts.URL), err)
	}
	if !validEpoch(epoch) {
		b.rdb.Close()
		return nil, fmt.Errorf("redis: key %s holds %q, not an epoch: is another program using prefix %q?", b.keys.epoch, epoch, opts.Prefix)
	}
	b.epoch = epoch
	if err := b.loadScripts(ctx); err != nil {
		b.rdb.Close()
		return nil, err
	}
	b.wg.Add(2)
	go b.monitor()
	go b.sweep()
	return b, nil
}

func (b *Broker) loadScripts(ctx context.Context) error {
	for _, s := range []*goredis.Script{publishScript, sweepScript, positionScript} {
		if err := s.Load(ctx, b.rdb).Err(); err != nil {
			return fmt.Errorf("%w: loading scripts into Redis: %v", broker.ErrUnavailable, err)
		}
	}
	return nil
}

func (o *Options) setDefaults() error {
	if o.URL == "" {
		o.URL = DefaultURL
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		return fmt.Errorf("redis: Prefix %q must not contain braces", o.Prefix)
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
	if o.FanInWindow <= 0 {
		o.FanInWindow = DefaultFanInWindow
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return errors.New("redis: TLSCertFile and TLSKeyFile go together")
	}
	return nil
}

func (o *Options) clientOptions() (*goredis.Options, error) {
	c, err := goredis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("redis: URL: %w", err)
	}
	if o.Username != "" {
		c.Username = o.Username
	}
	if o.Password != "" {
		c.Password = o.Password
	}
	if o.TLSCAFile != "" || o.TLSCertFile != "" || o.TLSInsecureSkipVerify {
		if c.TLSConfig == nil {
			c.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: strings.Split(c.Addr, ":")[0]}
		}
		if err := applyTLS(c.TLSConfig, o.TLSCAFile, o.TLSCertFile, o.TLSKeyFile, o.TLSInsecureSkipVerify); err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
	}
	c.DialTimeout = o.Timeout
	c.ReadTimeout = o.Timeout
	c.WriteTimeout = o.Timeout
	c.PoolTimeout = o.Timeout
	c.ContextTimeoutEnabled = true
	c.MaxRetries = -1   // a retried script could append an event twice
	c.DialerRetries = 1 // a refused dial fails the call at once
	c.DisableIdentity = true
	return c, nil
}

func applyTLS(cfg *tls.Config, caFile, certFile, keyFile string, insecure bool) error {
	cfg.InsecureSkipVerify = insecure //nolint:gosec // opt-in, for tests
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("TLS CA file %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return nil
}

func validEpoch(e string) bool {
	if len(e) == 0 || len(e) > 32 {
		return false
	}
	for i := 0; i < len(e); i++ {
		if c := e[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// quietLogger silences go-redis's own log, which writes a line per failed
// dial: the broker logs each outage once instead.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

var quietOnce sync.Once

// Epoch implements broker.Broker.
func (b *Broker) Epoch() string { return b.epoch }

// Healthy implements broker.HealthChecker: Redis answers and still holds
// this node's epoch.
func (b *Broker) Healthy(ctx context.Context) error {
	if err := b.usable(); err != nil {
		return err
	}
	ctx, cancel := b.bounded(ctx)
	defer cancel()
	epoch, err := b.rdb.Get(ctx, b.keys.epoch).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return b.fail(ctx, "health check", err)
	}
	return b.checkEpoch(epoch)
}

func (b *Broker) usable() error {
	if b.closed.Load() {
		return fmt.Errorf("%w: broker is closed", broker.ErrClosed)
	}
	if err := b.broken.Load(); err != nil {
		return *err
	}
	return nil
}

// checkEpoch compares the epoch Redis holds with this node's. A Redis that
// lost its data is another log: this node must not give out ids of the old
// epoch for it, so it refuses every call until restarted.
func (b *Broker) checkEpoch(epoch string) error {
	if epoch == b.epoch {
		return nil
	}
	err := fmt.Errorf("%w: Redis lost this log (epoch %s, Redis holds %q): restart this node", broker.ErrUnavailable, b.epoch, epoch)
	if b.broken.CompareAndSwap(nil, &err) {
		b.log.Error("broker log was reset: this node refuses to publish and deliver until restarted", "err", err)
	}
	return *b.broken.Load()
}

// errTimeout is the cause of the contexts that bound each call.
var errTimeout = errors.New("broker call timed out")

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

// fail turns an error of a Redis call into the error to return: ErrClosed
// after Close, the caller's context error when that ended, the broken
// state for a reset log, and otherwise ErrUnavailable, noted as an outage.
func (b *Broker) fail(ctx context.Context, op string, err error) error {
	if b.closed.Load() {
		return fmt.Errorf("%w: broker is closed", broker.ErrClosed)
	}
	if cerr := context.Cause(ctx); cerr != nil && !errors.Is(cerr, errTimeout) {
		return fmt.Errorf("redis: %s: %w", op, ctx.Err())
	}
	if strings.HasPrefix(err.Error(), "HERALDEPOCH") {
		return b.checkEpoch("")
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		err = fmt.Errorf("no answer within %v", b.opts.Timeout)
	}
	err = fmt.Errorf("%w: redis: %s: %v", broker.ErrUnavailable, op, err)
	b.outage.Down(err, callStart(ctx))
	b.kick()
	return err
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

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

// monitor confirms recovery after a failure: it pings with backoff until
// Redis answers with this node's epoch, then logs "broker back".
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
			epoch, err := b.rdb.Get(ctx, b.keys.epoch).Result()
			cancel()
			if err == nil || errors.Is(err, goredis.Nil) {
				if b.checkEpoch(epoch) == nil {
					b.outage.Up()
				}
				break
			}
			if b.closed.Load() {
				return
			}
			b.outage.Down(err, started)
			select {
			case <-b.stop:
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 5*time.Second)
		}
	}
}

// sweep forgets topics whose events have all aged out, so that memory
// follows retention when nothing is published.
func (b *Broker) sweep() {
	defer b.wg.Done()
	every := min(max(b.opts.MaxAge/4, 100*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		if b.usable() != nil {
			continue
		}
		for {
			ctx, cancel := b.bounded(context.Background())
			now, err := b.rdb.Time(ctx).Result()
			var n int64
			if err == nil {
				cutoff := now.Add(-b.opts.MaxAge).UnixMilli()
				n, err = sweepScript.Run(ctx, b.rdb,
					[]string{b.keys.touched, b.keys.topics, b.keys.cut, b.keys.cutFloor},
					cutoff, b.keys.topicPrefix, 100, maxCutMarks).Int64()
			}
			cancel()
			if err != nil || n < 100 {
				break
			}
		}
	}
}

// Publish implements broker.Broker. It returns once Redis executed the
// append.
func (b *Broker) Publish(ctx context.Context, ev *broker.Event) (broker.PublishResult, error) {
	if err := b.usable(); err != nil {
		return broker.PublishResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return broker.PublishResult{}, err
	}
	ctx, cancel := b.bounded(ctx)
	defer cancel()
	ev.Time = time.Time{}
	data := wire.Append(make([]byte, 0, wire.Size(ev)), ev)
	keyed, idem := "0", b.keys.idemPrefix+ev.Topic
	if ev.IdempotencyKey != "" {
		keyed, idem = "1", idem+"\x00"+ev.IdempotencyKey
	}
	res, err := publishScript.Run(ctx, b.rdb,
		[]string{b.keys.epoch, b.keys.seq, b.keys.all, b.keys.topic(ev.Topic), b.keys.topics, b.keys.touched, b.keys.cut, idem},
		b.epoch, ev.Topic, data, b.opts.MaxEvents, b.opts.MaxAge.Microseconds(), b.opts.IdempotencyWindow.Milliseconds(),
		b.opts.FanInWindow.Milliseconds(), keyed).Int64Slice()
	if err != nil {
		return broker.PublishResult{}, b.fail(ctx, "publish", err)
	}
	if len(res) != 3 {
		return broker.PublishResult{}, fmt.Errorf("%w: redis: publish script answered %v", broker.ErrUnavailable, res)
	}
	b.confirm()
	if res[0] == 1 {
		return broker.PublishResult{Seq: uint64(res[1]), Duplicate: true}, nil
	}
	ev.Seq = uint64(res[1])
	ev.Time = time.UnixMicro(res[2])
	return broker.PublishResult{Seq: ev.Seq}, nil
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
	return b.rdb.Close()
}

// SaveSchemas implements broker.SchemaStore.
func (b *Broker) SaveSchemas(ctx context.Context, set []byte) error {
	if err := b.usable(); err != nil {
		return err
	}
	ctx, cancel := b.bounded(ctx)
	defer cancel()
	if err := b.rdb.RPush(ctx, b.keys.schemas, set).Err(); err != nil {
		return b.fail(ctx, "save schemas", err)
	}
	return nil
}

// LoadSchemas implements broker.SchemaStore.
func (b *Broker) LoadSchemas(ctx context.Context, skip int) ([][]byte, error) {
	if err := b.usable(); err != nil {
		return nil, err
	}
	ctx, cancel := b.bounded(ctx)
	defer cancel()
	vals, err := b.rdb.LRange(ctx, b.keys.schemas, int64(skip), -1).Result()
	if err != nil {
		return nil, b.fail(ctx, "load schemas", err)
	}
	sets := make([][]byte, len(vals))
	for i, v := range vals {
		sets[i] = []byte(v)
	}
	return sets, nil
}

// redactURL hides a password in a Redis URL for messages.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	if _, ok := p.User.Password(); ok {
		p.User = url.UserPassword(p.User.Username(), "***")
	}
	return p.String()
}

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
//	{p}:seq       the last sequence given out (INCRBY)
//	{p}:t:<topic> one stream per topic, entry id "<seq>-0", fields t (µs) and e (the event)
//	{p}:all       the fan-in stream: every event, fields s (seq), t and e, kept for FanInWindow
//	{p}:topics    topic names (sorted set, score 0: prefix lookups by ZRANGEBYLEX)
//	{p}:touched   topic → time of its last publish (for forgetting idle topics)
//	{p}:cut       topic → highest sequence retention removed from it
//	{p}:cutfloor  marks folded away to bound {p}:cut
//	{p}:idem:<topic>\x00<key>   idempotency keys: "<seq> <fingerprint>" of the original, expiring after the window
//	{p}:schemas   pushed schema registrations, a list
//
// # Publish
//
// One Lua script (EVALSHA) does everything atomically: it checks the epoch
// key, looks up the idempotency key (GET; SET PX after the append), takes
// the run's sequences (INCRBY), reads the server clock (TIME), appends the
// event to its topic stream and to the fan-in stream, trims the topic by
// count (once it holds MaxEvents and an eighth, back to MaxEvents: Replay
// serves only the newest MaxEvents) and by age (the oldest entries, looked
// at on one event in ageCheckEvery), and records the highest sequence
// trimmed. Seq is thus one total order across all topics for every node,
// and Publish returns after Redis executed the script: as durable as the
// server's persistence (appendonly yes with appendfsync everysec or
// always).
//
// Publishes are pipelined (broker.Pipeliner): whatever is queued while a
// run is in flight goes in the next run, one script call of up to
// maxRunEvents events, in the order they were handed over; Publish is one
// such event waited for. So one node has one run in flight at a time, and
// concurrent publishers share its round trip.
//
// Cost per publish: at most one round trip; inside Redis two XADDs, and
// per topic of a run an XLEN and a ZADD member (the rest is rare), about
// 9 µs of Redis's CPU per event with 100 topics (BENCHMARKS.md); the event
// is stored twice, once in its topic (MaxEvents per topic, and the slack)
// and once in the fan-in stream, which only holds the last FanInWindow
// (default 1m; at 1,000 events/s of 1 KiB that is about 60 MB).
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
// records per topic the highest sequence it removed ({p}:cut). Events past
// MaxEvents within the slack, and events older than MaxAge, that no
// publish has trimmed yet are skipped by Replay, and a sweeper on every
// node deletes topics whose last event aged out, recording their last
// sequence. Replay after position P is Truncated exactly when a matching
// topic's mark is above P, or an event after P was skipped (aged, or past
// MaxEvents); beyond 100,000 marks the lowest fold into {p}:cutfloor, and a
// position below it is Truncated for any pattern (cautious, as the
// contract allows).
//
// # Fan-in
//
// Each Subscribe (the hub makes one per node) is one XREAD BLOCK loop on the
// fan-in stream, on a connection of its own, from the entry that was last
// when Subscribe was called. Sequences in the fan-in stream are contiguous,
// so a node that fell further behind than FanInWindow (away from Redis, or
// held up delivering) notices the jump and reads the missing events from
// the topic streams before going on: nothing is lost or delivered twice
// while retention still holds them. Redis sends each event once per node,
// not once per browser: 3 nodes with 10,000 browsers each on one topic at
// 1,000 events/s read 3,000 entries/s.
//
// What retention took from the topic streams meanwhile, the subscription
// says (broker.LostType): if fewer events are left than the jump skipped,
// it delivers a marker for each topic whose removal mark ({p}:cut) is above
// its position, read with the events in one MULTI. That errs on the side of
// caution, as the contract allows: retention removes a topic's oldest
// events first, so such a topic lost every event it had in the gap, or had
// none there and was trimmed of later ones. When Redis cannot name the
// topics (their marks were folded into {p}:cutfloor, or more than 10,000
// are above the position), it delivers one marker for every topic (an
// empty Topic), and the server ends every stream of the node. The markers
// come at the jump, before the events left and any later event, not at
// each topic's next event: a stream on a pattern that spans topics thus
// ends before it gets anything after the loss, and resuming from where it
// was, Replay reports Truncated.
//
// # Replay
//
// Replay finds the matching topics (a literal is its own key; a wildcard
// pattern reads the names under its literal prefix with ZRANGEBYLEX and
// matches them), then reads in one MULTI/EXEC the server clock, the epoch,
// XRANGE from P+1 of every matching topic and the cut marks above P, and
// merges the topics by sequence.
//
// # Snapshot
//
// Snapshot (broker.Snapshotter) first reads {p}:seq, the last sequence
// given out: that is Upto. The publish script adds a topic to {p}:topics in
// the same atomic step that takes its sequence, so every topic with an event
// up to Upto is listed by then, and listing the names afterwards (as Replay
// does, a page of 512 at a time) misses none. For each name it reads the
// topic stream's last entry with id <= "<Upto>-0" (XREVRANGE ... COUNT 1),
// pipelined a page per round trip: each topic as of Upto, however many
// publishes land meanwhile. A topic whose last such event is older than
// MaxAge (not trimmed yet) is left out, as Replay skips it; a topic whose
// events up to Upto were trimmed meanwhile is absent and its later events
// arrive live. Reading stops once more than the limit of topics had an
// event. No lock is taken: publishes go on between the round trips.
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
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/remote"
)

// maxCutMarks bounds the per-topic removal marks kept one by one.
const maxCutMarks = 100_000

// Broker is a broker.Broker on Redis Streams. Its zero value is not usable;
// call New.
type Broker struct {
	opts  Options
	log   *slog.Logger
	copts *goredis.Options // for the subscriptions' own clients
	rdb   *goredis.Client
	epoch string
	keys  keys
	link  *remote.Link
	queue appendQueue // publishes waiting for the next run (pipeline.go)
}

var (
	_ broker.Broker        = (*Broker)(nil)
	_ broker.HealthChecker = (*Broker)(nil)
	_ broker.SchemaStore   = (*Broker)(nil)
	_ broker.Pipeliner     = (*Broker)(nil)
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
		opts:  opts,
		log:   opts.Logger,
		copts: copts,
		rdb:   goredis.NewClient(copts),
		keys:  newKeys(opts.Prefix),
	}
	b.link = remote.New(remote.Options{
		Name: "redis", LogName: "redis", Timeout: opts.Timeout, Logger: opts.Logger,
		IsTimeout: isTimeout,
		Reset: func(err error) error {
			if strings.HasPrefix(err.Error(), "HERALDEPOCH") {
				return b.checkEpoch("")
			}
			return nil
		},
	})
	ctx, cancel := context.WithTimeout(ctx, 2*opts.Timeout)
	defer cancel()
	epoch, err := b.rdb.SetArgs(ctx, b.keys.epoch, broker.NewEpoch(), goredis.SetArgs{Mode: "NX", Get: true}).Result()
	if errors.Is(err, goredis.Nil) {
		epoch, err = b.rdb.Get(ctx, b.keys.epoch).Result()
	}
	if err != nil {
		b.rdb.Close()
		return nil, fmt.Errorf("%w: Redis at %s: %v", broker.ErrUnavailable, remote.RedactURL(opts.URL), err)
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
	b.link.Start(b.probe)
	b.link.Go(b.sweep)
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
	if err := b.link.Usable(); err != nil {
		return err
	}
	ctx, cancel := b.link.Bound(ctx)
	defer cancel()
	epoch, err := b.rdb.Get(ctx, b.keys.epoch).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return b.link.Fail(ctx, "health check", err)
	}
	return b.checkEpoch(epoch)
}

// checkEpoch compares the epoch Redis holds with this node's: a Redis that
// lost its data is another log.
func (b *Broker) checkEpoch(epoch string) error {
	if epoch == b.epoch {
		return nil
	}
	return b.link.Break(fmt.Errorf("%w: Redis lost this log (epoch %s, Redis holds %q): restart this node", broker.ErrUnavailable, b.epoch, epoch))
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// probe is the monitor's check: Redis answers, and (checkEpoch) with this
// node's epoch.
func (b *Broker) probe(ctx context.Context) error {
	epoch, err := b.rdb.Get(ctx, b.keys.epoch).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return err
	}
	_ = b.checkEpoch(epoch)
	return nil
}

// sweep forgets topics whose events have all aged out, so that memory
// follows retention when nothing is published.
func (b *Broker) sweep(stop <-chan struct{}) {
	every := min(max(b.opts.MaxAge/4, 100*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if b.link.Usable() != nil {
			continue
		}
		for {
			ctx, cancel := b.link.Bound(context.Background())
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

// Close implements broker.Broker.
func (b *Broker) Close() error {
	if !b.link.Close() {
		return nil
	}
	return b.rdb.Close()
}

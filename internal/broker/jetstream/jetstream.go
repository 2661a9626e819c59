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
// Publishes are pipelined (broker.Pipeliner, pipeline.go): each topic has
// a queue on this node, appended in order by one holder at a time while
// topics go on in parallel. A single event of a topic whose last sequence
// the node knows goes out with a reply subject of the node's own, and its
// PubAck, read by that subscription's goroutine, answers it and sends the
// topic's next event: no goroutine waits per append (inflight.go). What
// queued up while a topic's previous append was in
// flight goes out as one atomic batch (stream setting allow_atomic, NATS
// 2.12 or newer): its first event chained as above, the others marked
// Herald-Run, as a batch's messages take consecutive sequences and the
// stream takes all of them or none; so a conflict with another node
// retries the whole batch, and order and the chain hold at one round trip
// per batch. Events with an idempotency key go alone (a batch refuses a
// duplicate message id as a whole), one round trip each per topic, as do
// all events on an older server. A node older than this one reads a
// Herald-Run event's Herald-Prev (the batch's first predecessor, lower
// than the real one) and may miss a truncation in a replay that starts
// inside a batch whose earlier events retention removed.
//
// # Idempotency
//
// An idempotency key becomes the message id (Nats-Msg-Id) "<topic> <quoted
// key>", de-duplicated by the stream within its Duplicates window
// (Options.IdempotencyWindow, at most MaxAge). The event's Fingerprint
// travels with it in the header Herald-Fingerprint. A duplicate's PubAck
// carries only the original's sequence, so Publish then reads the
// original's header from the stream's leader: one more round trip, for
// duplicates only. The stream keeps message ids apart from messages, so a
// duplicate whose original count retention already removed (MaxEvents
// within the window) is still one, reported with no Fingerprint, as is one
// whose original an older Herald stored without the header.
//
// # Fan-in
//
// Each Subscribe (the hub makes one per node) is one ordered consumer on
// "<prefix>.ev.>", in stream order, starting after the stream's last
// sequence at the time of the call. nats.go recreates it after a disconnect
// or a lost consumer, from the last sequence it returned + 1: nothing is
// lost or delivered twice. The server sends each event once per node, not
// once per browser: 3 nodes with 10,000 browsers each on one topic at 1,000
// events/s read 3,000 messages/s from NATS, not 30,000,000. Every message
// of the stream is an event the consumer reads, so a sequence it skips is
// an event retention removed before this node read it (the node fell
// further behind than the stream keeps of a topic). Its topic went with
// it, so the subscription delivers a LostSpanningType marker before the
// next event (the node's streams of several topics end), and a LostType
// marker before the next event of each topic whose Herald-Prev chain shows
// the loss (that topic's streams end); they resume through Replay, which
// names the gaps.
//
// # Snapshot
//
// Snapshot (broker.Snapshotter) is JetStream's "last message per subject",
// with a batched direct get ($JS.API.DIRECT.GET.<STREAM> with multi_last;
// the stream is created with allow_direct). Snapshot first reads the
// stream's last sequence from stream info, the floor: every event accepted
// before the call is at or below it. It then asks for the last message of
// each subject matching the patterns; the server that answers takes its own
// last sequence, picks each subject's last message up to it under one read
// lock of its store, and names that sequence, which is Upto: one position,
// however many publishes land meanwhile. Further pages of a long answer (at
// most 8 MiB each) ask with up_to_seq set to Upto, from after the last
// sequence received. Snapshot asks for limit+1 messages: one more tells
// More. A server answers a batched get that matches more than 1,024
// subjects with 413; Snapshot then lists the subjects under the patterns
// (stream info with a subject filter, memory in proportion to the matching
// topics) and asks for them 512 at a time, every request up to the floor,
// which is then Upto. Events that MaxAge removed are gone from the stream,
// so their topics are absent, as the contract wants.
//
// A stream with Replicas above 1 answers direct gets from any replica that
// has caught up once, and a follower may lag the leader by the last
// moment's events. A first answer that names a position below the floor
// came from such a follower, and Snapshot asks again; later pages, the
// listed subjects' requests and an answer that found nothing name no
// position of the replica's own, so a lagging follower can still leave out
// an event accepted just before the call there. With one replica the
// leader answers every request.
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
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/remote"
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
	link       *remote.Link
	atomic     bool          // the stream takes atomic batches (pipeline.go)
	batchSlots chan struct{} // bounds this node's batches in flight

	mu     sync.Mutex // guards topics
	topics map[string]*topicState

	inflight inflight  // single appends awaiting their answers (inflight.go)
	fast     fastState // runs appended as fast batches (fast.go)

	kv kvState // the presence and revocation buckets (presence.go)
}

var (
	_ broker.Broker        = (*Broker)(nil)
	_ broker.HealthChecker = (*Broker)(nil)
	_ broker.SchemaStore   = (*Broker)(nil)
	_ broker.Pipeliner     = (*Broker)(nil)
)

// topicState queues this node's publishes to one topic, which one holder
// at a time (busy) appends in order, and remembers the topic's last
// sequence, for the Herald-Prev chain (pipeline.go). The holder is a
// goroutine, or an append in flight (inflight.go).
type topicState struct {
	waiting []*pendingAppend // guarded by Broker.mu
	busy    bool             // guarded by Broker.mu
	last    uint64           // owned by the holder
	known   bool             // last is known; owned by the holder
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
		topics:     make(map[string]*topicState),
		batchSlots: make(chan struct{}, maxBatchesInFlight),
		link: remote.New(remote.Options{
			Name: "NATS JetStream", LogName: "nats", Timeout: opts.Timeout, Logger: opts.Logger,
			IsTimeout: func(err error) bool { return errors.Is(err, nats.ErrTimeout) },
		}),
	}
	copts, err := b.connectOptions()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(opts.URL, copts...)
	if err != nil {
		return nil, fmt.Errorf("%w: connecting to NATS at %s: %v", broker.ErrUnavailable, remote.RedactURLs(opts.URL), err)
	}
	b.nc = nc
	warning, err := checkServerVersion(nc.ConnectedServerVersion())
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("NATS at %s: %w", remote.RedactURLs(opts.URL), err)
	}
	if warning != "" {
		b.log.Warn(warning, "nats", nc.ConnectedServerVersion())
	}
	if b.js, err = natsjs.New(nc, natsjs.WithDefaultTimeout(opts.Timeout)); err != nil {
		nc.Close()
		return nil, err
	}
	if err := b.setUp(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	if err := b.startInflight(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("%w: subscribing to PubAcks: %v", broker.ErrUnavailable, err)
	}
	if err := b.startFast(b.stream.CachedInfo().Config); err != nil {
		nc.Close()
		return nil, fmt.Errorf("%w: subscribing to fast batches' answers: %v", broker.ErrUnavailable, err)
	}
	b.link.Start(b.probe)
	return b, nil
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
			b.link.Down(fmt.Errorf("disconnected from NATS: %v", err))
		}),
		nats.ReconnectHandler(func(*nats.Conn) { b.link.Kick() }),
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
	if files := (remote.TLSFiles{CAFile: o.TLSCAFile, CertFile: o.TLSCertFile, KeyFile: o.TLSKeyFile, InsecureSkipVerify: o.TLSInsecureSkipVerify}); files.Set() {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if err := files.Apply(cfg); err != nil {
			return nil, fmt.Errorf("jetstream: %w", err)
		}
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
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
		// Runs of one topic's events are appended as atomic batches
		// (pipeline.go) or as fast batches (fast.go); a server older
		// than 2.12 ignores the first setting, one older than 2.14 the
		// second.
		AllowAtomicPublish: true,
		AllowBatchPublish:  true,
	})
	if err != nil {
		return fmt.Errorf("%w: creating stream %s: %v", broker.ErrUnavailable, b.streamName, err)
	}
	b.stream = stream
	b.atomic = stream.CachedInfo().Config.AllowAtomicPublish
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
	if err := b.link.Usable(); err != nil {
		return err
	}
	if st := b.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w: NATS connection is %v", broker.ErrUnavailable, st)
	}
	ctx, cancel := b.link.Bound(ctx)
	defer cancel()
	info, err := b.stream.Info(ctx)
	if err != nil {
		return b.link.Fail(ctx, "stream info", err)
	}
	return b.checkCreated(info.Created)
}

// checkCreated compares the stream's creation time with the one the epoch
// was taken from: a stream deleted and created again is another log.
func (b *Broker) checkCreated(created time.Time) error {
	if created.Equal(b.created) {
		return nil
	}
	return b.link.Break(fmt.Errorf("%w: stream %s was deleted and created again (epoch %s, now %s): restart this node",
		broker.ErrUnavailable, b.streamName, b.epoch, epochOf(created)))
}

// probe is the monitor's check: the stream answers, and (checkCreated) it
// is still the stream the epoch names.
func (b *Broker) probe(ctx context.Context) error {
	info, err := b.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream info: %v", err)
	}
	_ = b.checkCreated(info.Created)
	return nil
}

// loadLast reads the topic's last sequence from the stream.
func (b *Broker) loadLast(ctx context.Context, topic string, ts *topicState) error {
	m, err := b.stream.GetLastMsgForSubject(ctx, b.subjPrefix+topic)
	switch {
	case errors.Is(err, natsjs.ErrMsgNotFound):
		ts.last = 0
	case err != nil:
		return b.link.Fail(ctx, "last event of topic", err)
	default:
		ts.last = m.Sequence
	}
	ts.known = true
	return nil
}

// Close implements broker.Broker.
func (b *Broker) Close() error {
	if b.link.Close() {
		b.nc.Close()
		b.closeInflight()
	}
	return nil
}

// checkServerVersion refuses a NATS server older than 2.10, whose
// consumers cannot filter on several subjects (every resume would fail),
// and warns of one older than 2.11, which cannot answer snapshots (its
// direct get takes no batch). An empty or unreadable version passes: the
// server is asked for what it cannot do, and says so.
func checkServerVersion(v string) (warning string, err error) {
	var major, minor int
	if _, scanErr := fmt.Sscanf(v, "%d.%d", &major, &minor); scanErr != nil {
		return "", nil
	}
	switch {
	case major < 2 || major == 2 && minor < 10:
		return "", fmt.Errorf("the server is version %s; Herald needs NATS 2.10 or newer (2.11 or newer for snapshots)", v)
	case major == 2 && minor < 11:
		return "NATS is older than 2.11: subscriptions with snapshot=true will fail", nil
	}
	return "", nil
}

// Package broker is the contract between Herald's server and the event logs
// beneath it, as database/sql/driver is between database/sql and its drivers:
// the Event and its id, topics and patterns, the Broker interface every
// backend implements (memory, jetstream, redis below this directory), and
// the sentinel errors that every layer wraps. It imports only the standard
// library, so a backend author reads this package and nothing of the server.
//
// The conformance suite, internal/broker/brokertest, checks every backend
// against the contract written on Broker.
package broker

import "context"

// A Broker is the durable, ordered log that every event passes through. One
// broker may be shared by several Herald nodes (NATS JetStream, Redis
// Streams); the embedded memory broker serves one node.
//
// Contract, which every implementation must keep (internal/broker/brokertest
// checks it):
//
//   - Positions. Publish assigns each accepted event a sequence number, Seq,
//     unique within the broker's Epoch and increasing in the order events
//     were accepted, across all topics. Every node sharing the broker sees
//     the same Seq for the same event, so an EventID taken on one node
//     resumes on any other. A broker whose log is lost (the memory broker
//     restarting) must come back with a new Epoch.
//   - Publish returns success only once the event is accepted durably, as
//     durable as the backend is: it will be delivered to every live
//     subscription and returned by Replay until retention removes it. On
//     error nothing was accepted, or (for ErrUnavailable after a timeout)
//     the caller cannot know: retrying with the same IdempotencyKey is then
//     safe.
//   - Idempotency. A Publish whose non-empty IdempotencyKey equals that of
//     an event accepted on the same topic within the broker's idempotency
//     window accepts nothing and reports the earlier event's Seq with
//     Duplicate set, whatever the new event holds. Keys are compared as
//     they are, per topic: scoping them further (to a publisher) is the
//     server's, by what it puts into the key. The broker keeps the
//     Fingerprint of the event it accepted with the key for as long as it
//     remembers the key, and reports it with every duplicate
//     (PublishResult.Fingerprint), so that the server can tell a retry (the
//     same Fingerprint) from a reuse of the key for other content, which it
//     refuses; the broker itself compares no Fingerprints. It reports ""
//     when it can no longer tell; PublishResult.Fingerprint says when.
//   - Order. Subscribe's deliver function is called from one goroutine at a
//     time, with events in Seq order, each once, and with no lock of the
//     broker held: the server writes to sockets in it, and must hold up
//     neither publishers nor the broker's other calls. Events are
//     delivered for every topic; the server's hub filters. Every event
//     accepted after Subscribe returns is delivered; earlier ones may be.
//     Delivery stops soon after ctx ends. A subscription that finds events
//     gone before it could deliver them (it fell behind the retention of a
//     shared log) says so, never silence: before it delivers any event
//     that came after them, a marker of Type LostType for each topic that
//     lost events, or one for every topic (an empty Topic) when it cannot
//     tell which. A stream of several topics must hear of the loss before
//     it is handed a later event of another topic, or it would resume
//     past the loss: a subscription that can name the topics only at each
//     one's next event delivers a LostSpanningType marker where it finds
//     the loss, and then a LostType marker before each such topic's next
//     event.
//   - Replay returns, in Seq order, every retained event with Seq > after
//     on topics matching the patterns (none for no patterns), at least up
//     to the last event accepted before Replay was called. A position of
//     another epoch, or the zero EventID, counts as Seq 0. Truncated
//     reports that events after the position on those topics were already
//     removed by retention, or that the position belongs to another epoch:
//     the subscriber may have missed events. It may err on the side of
//     caution (a backend that forgets which topics lost what), never the
//     other way.
//   - A cancelled or expired ctx fails the call with an error wrapping
//     ctx.Err(), and a Publish that fails so accepted nothing.
//   - Close stops delivery (once it returns, no deliver call is running or
//     starts), makes later calls fail with ErrClosed, and may be called
//     again.
type Broker interface {
	// Epoch identifies the log that Seq numbers refer to: 1 to 32 bytes of
	// [a-z0-9].
	Epoch() string
	// Publish appends ev to its topic, setting ev.Seq and ev.Time. It takes
	// ownership of ev; a duplicate is reported, not appended.
	Publish(ctx context.Context, ev *Event) (PublishResult, error)
	// Subscribe delivers every event accepted after it returns, until ctx
	// ends or the broker closes. deliver must not block for long.
	Subscribe(ctx context.Context, deliver func(*Event)) error
	// Replay returns the retained events after a position; see the
	// contract above. Retention bounds how many there can be.
	Replay(ctx context.Context, patterns []Pattern, after EventID) (ReplayResult, error)
	// Close releases the broker.
	Close() error
}

// A Pipeliner is a Broker that takes a publish without waiting for the
// previous one's outcome, so that one caller (a PublishStream) can have
// many appends in flight, and concurrent publishers to one topic share
// round trips instead of queueing one round trip each.
//
// Contract, in addition to Broker's (internal/broker/brokertest checks it):
//
//   - PublishAsync appends ev as Publish would, taking ownership of it,
//     and calls done exactly once with what Publish would have returned:
//     an id only once the broker accepted the event, as durably as
//     Publish's. done may run on any goroutine, before PublishAsync
//     returns or later, and must not block for long; ev's Seq and Time
//     are set when done reports success.
//   - Order. Of events of one topic handed over by PublishAsync calls
//     made one after the other (one returned before the next began), the
//     accepted ones get Seqs in call order, whatever fails between them.
//     done calls need not come in that order.
//   - A ctx that ends before the event is sent fails it with an error
//     wrapping ctx.Err(); once sent, done reports what the broker said,
//     or ErrUnavailable when it cannot know (as Publish after a timeout).
//   - After Close, done reports ErrClosed; an append in flight when Close
//     is called is answered, with an error if need be: never silence.
type Pipeliner interface {
	PublishAsync(ctx context.Context, ev *Event, done func(PublishResult, error))
}

// PublishAndWait is Publish for a Pipeliner: it hands ev to PublishAsync
// and waits for its answer, which the contract guarantees, so that a
// single publish joins the appends in flight instead of going apart.
func PublishAndWait(ctx context.Context, p Pipeliner, ev *Event) (PublishResult, error) {
	type outcome struct {
		res PublishResult
		err error
	}
	answered := make(chan outcome, 1)
	p.PublishAsync(ctx, ev, func(res PublishResult, err error) { answered <- outcome{res, err} })
	o := <-answered
	return o.res, o.err
}

// PublishResult is the outcome of an accepted Publish.
type PublishResult struct {
	// Seq is the event's position (for a duplicate, the original's).
	Seq uint64
	// Duplicate reports that the IdempotencyKey matched an earlier event
	// and nothing new was appended.
	Duplicate bool
	// Fingerprint is, for a duplicate, the Fingerprint of the event first
	// accepted with the key: the new event's own for a retry, another for
	// a reuse of the key. It is "" for a new event, and for a duplicate
	// when the broker can no longer tell: the first event had none (it was
	// published by a Herald older than the field), or the broker kept the
	// Fingerprint only with the event and the event is gone (JetStream,
	// when count retention removed it before its key's window ended).
	Fingerprint string
}

// ReplayResult is what Replay found.
type ReplayResult struct {
	// Events are the retained events after the position, in Seq order.
	Events []*Event
	// Truncated reports that events the subscriber asked for are no longer
	// retained (or that its position belongs to another epoch).
	Truncated bool
}

// A HealthChecker is a Broker that can tell whether it can serve right now.
// /readyz reports unready while Healthy returns an error.
type HealthChecker interface {
	Healthy(ctx context.Context) error
}

// A SchemaStore is a Broker that also keeps schemas pushed at run time
// (herald.v1.SchemaService.RegisterSchemas), so that every node sharing the broker
// knows every type. Registrations are opaque bytes (serialized
// FileDescriptorSets), kept in the order they were saved.
type SchemaStore interface {
	// SaveSchemas durably appends one registration.
	SaveSchemas(ctx context.Context, set []byte) error
	// LoadSchemas returns the registrations after the first skip, in order.
	LoadSchemas(ctx context.Context, skip int) ([][]byte, error)
}

// A Snapshotter is a Broker that can tell the latest retained event of
// every topic matching some patterns, as of one position: the state of
// those topics, for a subscriber that asks for it (snapshot=true) before
// the live events.
//
// The server subscribes first, then calls Snapshot, sends the snapshot,
// and then sends only the live events with Seq > Upto: each topic's latest
// event once, then every later one, with no gap and no duplicate at the
// seam. That holds only because a snapshot is of one position: were one
// topic read as of a later position than another, ids on the stream would
// go backwards or events would be skipped.
//
// Contract, which every implementation must keep (internal/broker/brokertest
// checks it):
//
//   - Position. Upto is a Seq of the broker's Epoch, at least the Seq of
//     every event accepted before Snapshot was called (whatever its topic),
//     so Replay after EventID{Epoch(), Upto} goes on where the snapshot
//     ends. For each topic matching the patterns, Events holds the event of
//     that topic with the highest Seq <= Upto if it is still retained when
//     the broker reads the topic, and nothing otherwise. An event accepted
//     while Snapshot runs thus either has Seq <= Upto and is in Events (or
//     superseded there by a later event of its topic, also <= Upto), or has
//     Seq > Upto and reaches live subscriptions: never neither.
//   - Retention removes a topic's oldest events first, so a topic is
//     absent only when its events up to Upto aged out or were removed for
//     events after Upto (count retention, while Snapshot read other topics),
//     which the subscriber then gets live. Count retention alone never
//     leaves a topic absent: it keeps the latest event.
//   - Order and size. Events are in Seq order, one per topic, none for no
//     patterns, at most limit of them. More reports that more matching
//     topics have an event than limit; Events then holds limit of them,
//     which ones is not specified: the server refuses a snapshot that is
//     too large rather than send part of one. A limit below 1 fails with
//     ErrBadRequest.
//   - Deletion. The server marks a topic's state as deleted (a game server
//     shut down) by publishing an ordinary event of Type DeletedType, with
//     no payload and an empty TypeURL. To the broker it is an event like
//     any other: accepted, delivered, replayed and retained as the others
//     are, and returned by Snapshot as its topic's latest event; the server
//     leaves such topics out of what it sends. A marker that retention
//     removed leaves its topic absent, which means the same.
//   - A cancelled or expired ctx fails the call with an error wrapping
//     ctx.Err(); after Close the call fails with ErrClosed; a backend that
//     cannot answer fails with ErrUnavailable, as its other calls do.
//     Snapshot may run concurrently with every other call, and holds up
//     publishers no longer than a Replay of as many topics would.
type Snapshotter interface {
	// Snapshot returns the latest retained event of each topic matching
	// patterns, as of one position; see the contract above.
	Snapshot(ctx context.Context, patterns []Pattern, limit int) (SnapshotResult, error)
}

// SnapshotResult is what Snapshot found.
type SnapshotResult struct {
	// Events are the latest retained events, one per matching topic, in
	// Seq order.
	Events []*Event
	// Upto is the position the snapshot is of: live events with Seq <=
	// Upto are in it, or superseded by one that is.
	Upto uint64
	// More reports that more topics have an event than the limit allowed.
	More bool
}

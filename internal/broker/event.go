package broker

import (
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DeletedType is the Type of the event that marks a topic's state as
// deleted (see Snapshotter): it has no payload and an empty TypeURL, and
// brokers store it like any other event.
const DeletedType = "herald.deleted"

// LostType is the Type of the marker a subscription delivers in place of
// events of a topic that retention removed before the subscription could
// deliver them (Broker's Order rule): its Topic names the topic, or is
// empty for every topic (the subscription cannot tell which lost events),
// and its Seq is that of the event delivered right after it: the topic's
// next event, or an earlier one of another topic when the subscription
// finds the loss before then. It is never stored or published; the server
// ends the topic's streams (every stream, for an empty Topic), which
// resume from their last event and learn of the gap from Replay.
const LostType = "herald.lost"

// LostSpanningType is the Type of the marker a subscription delivers where
// it finds that events were lost before it could name their topics (a
// shared log skips them): its Topic is empty and its Seq that of the event
// delivered right after it. The server ends at once every stream that
// spans topics, which would be handed a later event of another topic
// next; a stream of one topic hears of its loss from the LostType marker
// that the subscription delivers before the topic's next event.
const LostSpanningType = "herald.lost-spanning"

// An Event is one published event. Once handed to Broker.Publish it is
// shared read-only by every goroutine that delivers it, and passed by
// pointer, never copied (go vet's copylocks check catches copies).
type Event struct {
	// Topic is the topic the event was published to.
	Topic string
	// Type is the SSE event name.
	Type string
	// TypeURL names the payload's protobuf message type
	// ("type.googleapis.com/<full name>"), as in google.protobuf.Any.
	TypeURL string
	// Payload is the payload message in protobuf binary encoding.
	Payload []byte
	// Attributes are the publisher's free-form attributes; may be nil.
	Attributes map[string]string
	// IdempotencyKey, when set, lets the broker drop a retried publish.
	IdempotencyKey string
	// Fingerprint identifies the content of an event that has an
	// IdempotencyKey, so that a retry can be told from a reuse of the key
	// for other content (see Broker). The server sets it, to a short hash
	// of Type, TypeURL, Payload and Attributes in printable ASCII without
	// spaces, as it may travel in a message header. It is the broker's
	// bookkeeping, not part of the event: Size does not count it, and
	// delivered and replayed events carry none.
	Fingerprint string
	// TraceParent and TraceState are the W3C trace context of the publish
	// that produced the event (the values of the traceparent and
	// tracestate headers), empty when the publishing node does not trace.
	// A node that delivers the event continues that trace. Brokers store
	// them with the event and return them with it, delivered or replayed;
	// Size does not count them.
	TraceParent string
	TraceState  string

	// Seq is the event's position in the broker's log, set by the broker:
	// unique and increasing in publish order across all topics of one
	// epoch.
	Seq uint64
	// Time is when the broker accepted the event.
	Time time.Time

	// local is what the server attached to the event on this node.
	local atomic.Value
	_     noCopy
}

// noCopy makes go vet's copylocks check report copies of an Event.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// Size is the event's size as the size limit counts it.
func (e *Event) Size() int {
	n := len(e.Topic) + len(e.Type) + len(e.TypeURL) + len(e.Payload) + len(e.IdempotencyKey)
	if len(e.Attributes) == 0 {
		return n // ranging over no map still sets up an iterator; the memory broker asks twice per publish
	}
	for k, v := range e.Attributes {
		n += len(k) + len(v)
	}
	return n
}

// Local returns the value the server attached to the event on this node
// (Attach), or nil.
func (e *Event) Local() any { return e.local.Load() }

// Attach attaches v to the event, unless a value is attached already, and
// returns the value attached. The server attaches what it renders of an
// event (its JSON and SSE frames), so that every subscriber, replay and
// rendering on this node shares one copy for as long as the event is
// retained. Brokers never read, copy or store the attached value: an event
// a broker decodes from a shared log starts with none. Every value attached
// to events must be of one concrete type.
func (e *Event) Attach(v any) any {
	if e.local.CompareAndSwap(nil, v) {
		return v
	}
	return e.local.Load()
}

// MessageName returns the payload's full message name from TypeURL.
func (e *Event) MessageName() string {
	return MessageName(e.TypeURL)
}

// MessageName returns the full message name a type URL names: what follows
// its last slash ("type.googleapis.com/orders.v1.OrderPlaced" →
// "orders.v1.OrderPlaced").
func MessageName(typeURL string) string {
	if i := strings.LastIndexByte(typeURL, '/'); i >= 0 {
		return typeURL[i+1:]
	}
	return typeURL
}

// An EventID is what browsers see in the SSE id field and send back as
// Last-Event-ID: the broker's epoch and the event's sequence number, written
// "<epoch>-<seq>". Within one epoch ids increase with Seq.
type EventID struct {
	Epoch string
	Seq   uint64
}

// String formats the id.
func (id EventID) String() string {
	var buf [96]byte // an epoch of up to 64 bytes, '-', 20 digits
	return string(id.append(buf[:0]))
}

func (id EventID) append(dst []byte) []byte {
	dst = append(dst, id.Epoch...)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, id.Seq, 10)
}

// ParseEventID parses an id written by EventID.String. ok is false for
// anything else.
func ParseEventID(s string) (id EventID, ok bool) {
	i := strings.LastIndexByte(s, '-')
	if i <= 0 || i > 64 || len(s)-i-1 > 20 {
		return EventID{}, false
	}
	for j := 0; j < i; j++ {
		if c := s[j]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return EventID{}, false
		}
	}
	seq, err := strconv.ParseUint(s[i+1:], 10, 64)
	if err != nil || (s[i+1] == '0' && len(s) > i+2) {
		return EventID{}, false
	}
	return EventID{Epoch: s[:i], Seq: seq}, true
}

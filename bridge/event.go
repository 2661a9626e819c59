package bridge

import (
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// An Event is one published event. Once handed to Broker.Publish it is
// shared read-only by every goroutine that delivers it.
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

	// Seq is the event's position in the broker's log, set by the broker:
	// unique and increasing in publish order across all topics of one
	// epoch.
	Seq uint64
	// Time is when the broker accepted the event.
	Time time.Time

	// json is the payload as protojson when this node's publish path
	// already rendered it: only for types that protojson may refuse after
	// they parse (see renderPlan), rendered to check them. It spares the
	// hub a decode and an encode. Usually nil: the hub renders on first
	// delivery.
	json []byte
	// frame caches the event's SSE frame bytes once the hub encoded them.
	frame atomic.Pointer[[]byte]
	// renders caches its frames in non-default renderings.
	renders renderCache
}

// Size is the event's size as the size limit counts it.
func (e *Event) Size() int {
	n := len(e.Topic) + len(e.Type) + len(e.TypeURL) + len(e.Payload) + len(e.IdempotencyKey)
	for k, v := range e.Attributes {
		n += len(k) + len(v)
	}
	return n
}

// MessageName returns the payload's full message name from TypeURL.
func (e *Event) MessageName() string {
	return messageName(e.TypeURL)
}

func messageName(typeURL string) string {
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

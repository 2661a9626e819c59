// Package wire is how networked brokers store an event: one self-contained
// byte string in protobuf wire format, so that a message in a JetStream
// stream or a field of a Redis stream entry carries everything a node needs
// to deliver the event, whichever node published it.
//
//	1 topic       string
//	2 type        string
//	3 type_url    string
//	4 payload     bytes
//	5 attribute   message { 1 key string, 2 value string }, repeated
//	6 time        int64, Unix nanoseconds, when the broker accepted the event
//	7 traceparent string, the W3C trace context of the publish (Event.TraceParent)
//	8 tracestate  string (Event.TraceState)
//
// The broker's own metadata (Seq, idempotency bookkeeping) lives beside the
// bytes, in the backend's headers or fields. Unknown fields are skipped, so
// a newer Herald may add fields that an older node ignores during a rolling
// upgrade.
package wire

import (
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	fieldTopic       protowire.Number = 1
	fieldType        protowire.Number = 2
	fieldTypeURL     protowire.Number = 3
	fieldPayload     protowire.Number = 4
	fieldAttribute   protowire.Number = 5
	fieldTime        protowire.Number = 6
	fieldTraceParent protowire.Number = 7
	fieldTraceState  protowire.Number = 8

	fieldKey   protowire.Number = 1
	fieldValue protowire.Number = 2
)

// ErrMalformed reports bytes that are not an encoded event.
var ErrMalformed = errors.New("wire: malformed event")

// Size returns the length of ev's encoding.
func Size(ev *broker.Event) int {
	n := sizeBytes(fieldTopic, len(ev.Topic)) + sizeBytes(fieldType, len(ev.Type)) +
		sizeBytes(fieldTypeURL, len(ev.TypeURL)) + sizeBytes(fieldPayload, len(ev.Payload)) +
		sizeBytes(fieldTraceParent, len(ev.TraceParent)) + sizeBytes(fieldTraceState, len(ev.TraceState))
	if !ev.Time.IsZero() {
		n += protowire.SizeTag(fieldTime) + protowire.SizeVarint(uint64(ev.Time.UnixNano()))
	}
	for k, v := range ev.Attributes {
		n += sizeBytes(fieldAttribute, attrSize(k, v))
	}
	return n
}

func sizeBytes(num protowire.Number, n int) int {
	if n == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

func attrSize(k, v string) int {
	return protowire.SizeTag(fieldKey) + protowire.SizeBytes(len(k)) + protowire.SizeTag(fieldValue) + protowire.SizeBytes(len(v))
}

// Append appends the encoding of ev's topic, type, type URL, payload,
// attributes, time and trace context (when set) to dst.
func Append(dst []byte, ev *broker.Event) []byte {
	dst = appendString(dst, fieldTopic, ev.Topic)
	dst = appendString(dst, fieldType, ev.Type)
	dst = appendString(dst, fieldTypeURL, ev.TypeURL)
	if len(ev.Payload) > 0 {
		dst = protowire.AppendTag(dst, fieldPayload, protowire.BytesType)
		dst = protowire.AppendBytes(dst, ev.Payload)
	}
	for k, v := range ev.Attributes {
		dst = protowire.AppendTag(dst, fieldAttribute, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(attrSize(k, v)))
		dst = protowire.AppendTag(dst, fieldKey, protowire.BytesType)
		dst = protowire.AppendString(dst, k)
		dst = protowire.AppendTag(dst, fieldValue, protowire.BytesType)
		dst = protowire.AppendString(dst, v)
	}
	if !ev.Time.IsZero() {
		dst = protowire.AppendTag(dst, fieldTime, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(ev.Time.UnixNano()))
	}
	dst = appendString(dst, fieldTraceParent, ev.TraceParent)
	return appendString(dst, fieldTraceState, ev.TraceState)
}

func appendString(dst []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return dst
	}
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendString(dst, s)
}

// Decode decodes an event encoded by Append. The event's Payload does not
// alias b. Seq is left for the caller to set.
func Decode(b []byte) (*broker.Event, error) { return decode(b, false) }

// DecodeOwned is Decode for bytes that the caller hands over, such as a
// message its broker client read for it alone: the event's Payload
// aliases b, which saves a copy of every event a node reads.
func DecodeOwned(b []byte) (*broker.Event, error) { return decode(b, true) }

func decode(b []byte, owned bool) (*broker.Event, error) {
	ev := &broker.Event{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == fieldTime && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, fmt.Errorf("%w: time: %v", ErrMalformed, protowire.ParseError(n))
			}
			ev.Time = time.Unix(0, int64(v))
			b = b[n:]
		case typ == protowire.BytesType && (num >= fieldTopic && num <= fieldAttribute || num == fieldTraceParent || num == fieldTraceState):
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, fmt.Errorf("%w: field %d: %v", ErrMalformed, num, protowire.ParseError(n))
			}
			b = b[n:]
			switch num {
			case fieldTopic:
				ev.Topic = string(v)
			case fieldType:
				ev.Type = string(v)
			case fieldTypeURL:
				ev.TypeURL = string(v)
			case fieldPayload:
				if owned {
					ev.Payload = v[:len(v):len(v)]
				} else {
					ev.Payload = append([]byte(nil), v...)
				}
			case fieldAttribute:
				k, val, err := decodeAttr(v)
				if err != nil {
					return nil, err
				}
				if ev.Attributes == nil {
					ev.Attributes = make(map[string]string)
				}
				ev.Attributes[k] = val
			case fieldTraceParent:
				ev.TraceParent = string(v)
			case fieldTraceState:
				ev.TraceState = string(v)
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, fmt.Errorf("%w: field %d: %v", ErrMalformed, num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return ev, nil
}

func decodeAttr(b []byte) (k, v string, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", "", fmt.Errorf("%w: attribute: %v", ErrMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType || (num != fieldKey && num != fieldValue) {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return "", "", fmt.Errorf("%w: attribute: %v", ErrMalformed, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		s, n := protowire.ConsumeString(b)
		if n < 0 {
			return "", "", fmt.Errorf("%w: attribute: %v", ErrMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		if num == fieldKey {
			k = s
		} else {
			v = s
		}
	}
	return k, v, nil
}

package bridge

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/sse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Validation: the publish path refuses every event that is not exactly
// what a browser may receive: a valid topic and type, attributes and keys
// within their limits, a payload of a known type that parses, meets its
// buf.validate constraints and renders as JSON.

// Limits on the parts of an event besides its payload.
const (
	maxAttributes        = 64
	maxAttributeKeyLen   = 128
	maxIdempotencyKeyLen = 128
	reservedTypePrefix   = "herald."
)

// A TypeResolver finds payload message types. It is the seam for the
// schema registry (internal/schema). Implementations must be safe for
// concurrent use.
type TypeResolver interface {
	protoregistry.MessageTypeResolver
	protoregistry.ExtensionTypeResolver
}

// A PayloadValidator is a TypeResolver that can also check a payload
// against its schema's constraints (buf.validate). Violations are reported
// as a *ViolationsError.
type PayloadValidator interface {
	ValidatePayload(proto.Message) error
}

// decodePayload parses a payload of type typeURL. Its errors name the type
// and the problem.
func decodePayload(types TypeResolver, typeURL string, payload []byte) (proto.Message, error) {
	mt, err := types.FindMessageByURL(typeURL)
	if err != nil {
		return nil, fmt.Errorf("%w: payload type %q is not known to this server (push its schema with herald schemas push, or list known types with GET /v1/schemas)", broker.ErrInvalidEvent, broker.MessageName(typeURL))
	}
	msg := mt.New().Interface()
	if err := (proto.UnmarshalOptions{Resolver: types}).Unmarshal(payload, msg); err != nil {
		return nil, fmt.Errorf("%w: payload does not parse as %s: %v", broker.ErrInvalidEvent, broker.MessageName(typeURL), err)
	}
	return msg, nil
}

// validatePayload applies the schema's constraints, when the resolver has
// any.
func validatePayload(types TypeResolver, msg proto.Message) error {
	v, ok := types.(PayloadValidator)
	if !ok {
		return nil
	}
	err := v.ValidatePayload(msg)
	if err == nil {
		return nil
	}
	var violations *broker.ViolationsError
	if errors.As(err, &violations) {
		return err
	}
	return fmt.Errorf("%w: %v", broker.ErrInvalidEvent, err)
}

// publishedEvent is an event as this node's publish path makes it, with
// room for what the hub renders of it.
type publishedEvent struct {
	ev broker.Event
	r  rendered
}

// newEvent validates req and turns it into an Event whose payload is
// known to render as JSON, so that nothing a browser receives can fail to
// parse.
func (p *publisher) newEvent(req *heraldv1.PublishRequest) (*broker.Event, error) {
	if err := broker.ValidateTopic(req.GetTopic()); err != nil {
		return nil, err
	}
	payload := req.GetPayload()
	if payload == nil || payload.GetTypeUrl() == "" {
		return nil, fmt.Errorf("%w: payload is missing (a google.protobuf.Any with a type URL)", broker.ErrInvalidEvent)
	}
	// One allocation for the event and what this node renders of it.
	pe := &publishedEvent{ev: broker.Event{
		Topic:          req.GetTopic(),
		Type:           req.GetType(),
		TypeURL:        payload.GetTypeUrl(),
		Payload:        payload.GetValue(),
		Attributes:     req.GetAttributes(),
		IdempotencyKey: req.GetIdempotencyKey(),
	}}
	ev := &pe.ev
	ev.Attach(&pe.r)
	if ev.Type == "" {
		ev.Type = ev.MessageName()
	}
	if err := sse.ValidEventName(ev.Type); err != nil {
		return nil, fmt.Errorf("%w: type %q %v; event types are up to %d bytes of A-Z a-z 0-9 and -._:", broker.ErrInvalidEvent, broker.Printable(ev.Type), err, sse.MaxEventNameLen)
	}
	if strings.HasPrefix(ev.Type, reservedTypePrefix) {
		return nil, fmt.Errorf("%w: type %q uses the reserved prefix %q", broker.ErrInvalidEvent, ev.Type, reservedTypePrefix)
	}
	if len(ev.Attributes) > maxAttributes {
		return nil, fmt.Errorf("%w: %d attributes, more than the limit of %d", broker.ErrInvalidEvent, len(ev.Attributes), maxAttributes)
	}
	for k := range ev.Attributes {
		if k == "" || len(k) > maxAttributeKeyLen || !utf8.ValidString(k) {
			return nil, fmt.Errorf("%w: attribute key %q must be 1 to %d bytes of UTF-8", broker.ErrInvalidEvent, broker.Printable(k), maxAttributeKeyLen)
		}
	}
	if len(ev.IdempotencyKey) > maxIdempotencyKeyLen {
		return nil, fmt.Errorf("%w: idempotency_key is %d bytes, longer than %d", broker.ErrInvalidEvent, len(ev.IdempotencyKey), maxIdempotencyKeyLen)
	}
	if n := ev.Size(); n > p.maxEventBytes {
		return nil, fmt.Errorf("%w: event is %d bytes, over the limit of %d bytes", broker.ErrEventTooLarge, n, p.maxEventBytes)
	}
	msg, err := decodePayload(p.types, ev.TypeURL, ev.Payload)
	if err != nil {
		return nil, err
	}
	if err := validatePayload(p.types, msg); err != nil {
		return nil, err
	}
	// Refuse what cannot be rendered as JSON. Most types can always be
	// rendered, or once their timestamps and durations are in range: the
	// hub renders those on first delivery, so an event no one receives
	// is never rendered. The others are rendered here, once.
	if m := msg.ProtoReflect(); !planFor(m.Descriptor()).renders(m) {
		if pe.r.json, err = renderJSON(p.types, msg, protojson.MarshalOptions{}); err != nil {
			return nil, err
		}
	}
	return ev, nil
}

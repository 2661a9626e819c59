package bridge

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/sse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
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
	// maxPayloadDepth bounds how deeply a payload's messages may nest,
	// google.protobuf.Any, Struct, Value and ListValue included, when it is
	// decoded from protobuf or JSON: deeper payloads are refused, so that
	// decoding costs time linear in the payload's size (an Any's contents
	// are decoded once per level around them). A JSON value in a Struct
	// takes two levels per nesting.
	maxPayloadDepth = 32
)

// A TypeResolver finds payload message types. It is the seam for the
// schema registry (internal/schema). Implementations must be safe for
// concurrent use.
type TypeResolver interface {
	protoregistry.MessageTypeResolver
	protoregistry.ExtensionTypeResolver
}

// DefaultTypeURLPrefix is the type URL prefix of google.protobuf.Any
// values that every server accepts.
const DefaultTypeURLPrefix = "type.googleapis.com/"

// typeURLResolver resolves only type URLs with one of its prefixes, so that
// whatever a publisher writes before a type's name cannot reach a browser
// verbatim (an Any's "@type" is rendered as published). The publish path
// decodes and renders with it, nested Any values included.
type typeURLResolver struct {
	TypeResolver
	prefixes []string
}

func (r typeURLResolver) allowed(url string) bool {
	for _, p := range r.prefixes {
		if len(url) > len(p) && url[:len(p)] == p && strings.IndexByte(url[len(p):], '/') < 0 {
			return true
		}
	}
	return false
}

func (r typeURLResolver) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	if !r.allowed(url) {
		return nil, protoregistry.NotFound
	}
	return r.TypeResolver.FindMessageByURL(url)
}

// requestResolver resolves what the REST API's JSON requests hold: payload
// types as the publish path does, and extensions also from the binary, so
// that a schema push's descriptor options (buf.validate's, whose
// definitions come with the binary, not with the pushed set) decode.
type requestResolver struct{ typeURLResolver }

func (r requestResolver) FindExtensionByName(field protoreflect.FullName) (protoreflect.ExtensionType, error) {
	if xt, err := r.typeURLResolver.FindExtensionByName(field); err == nil {
		return xt, nil
	}
	return protoregistry.GlobalTypes.FindExtensionByName(field)
}

func (r requestResolver) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	if xt, err := r.typeURLResolver.FindExtensionByNumber(message, field); err == nil {
		return xt, nil
	}
	return protoregistry.GlobalTypes.FindExtensionByNumber(message, field)
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
	mt, err := payloadType(types, typeURL)
	if err != nil {
		return nil, err
	}
	msg, _, err := unmarshalPayload(types, mt, typeURL, payload, false)
	return msg, err
}

// checkPayload is decodePayload, for a payload of mt, for a check that
// drops the message once done with it: a message of a type pushed at run
// time (dynamicpb) comes from a pool of cleared ones of its type, which
// saves most of what decoding allocates besides the field values
// themselves, its map of fields above all. The caller hands it back with
// sc.put(msg) and keeps nothing of it.
func checkPayload(types TypeResolver, mt protoreflect.MessageType, typeURL string, payload []byte) (msg proto.Message, sc *scratch, err error) {
	return unmarshalPayload(types, mt, typeURL, payload, true)
}

// payloadType resolves typeURL, or says it is not known.
func payloadType(types TypeResolver, typeURL string) (protoreflect.MessageType, error) {
	mt, err := types.FindMessageByURL(typeURL)
	if err != nil {
		return nil, fmt.Errorf("%w: payload type %q is not known to this server (push its schema with herald schemas push, or list known types with GET /v1/schemas)", broker.ErrInvalidEvent, broker.MessageName(typeURL))
	}
	return mt, nil
}

// unmarshalPayload decodes payload as a message of mt, the type of
// typeURL.
func unmarshalPayload(types TypeResolver, mt protoreflect.MessageType, typeURL string, payload []byte, pooled bool) (proto.Message, *scratch, error) {
	opts := proto.UnmarshalOptions{Resolver: types, RecursionLimit: maxPayloadDepth}
	var sc *scratch
	var msg proto.Message
	if pooled {
		sc = scratchFor(mt)
	}
	if sc != nil {
		msg = sc.pool.Get().(proto.Message)
		// Merge into a cleared message is Unmarshal into a new one; a
		// type with no required field anywhere has nothing for the check
		// of required fields to find, which AllowPartial skips.
		opts.Merge, opts.AllowPartial = true, sc.partial
	} else {
		msg = mt.New().Interface()
	}
	if err := opts.Unmarshal(payload, msg); err != nil {
		sc.put(msg)
		if strings.Contains(err.Error(), "recursion depth") {
			return nil, nil, errTooDeep
		}
		return nil, nil, fmt.Errorf("%w: payload does not parse as %s: %v", broker.ErrInvalidEvent, broker.MessageName(typeURL), err)
	}
	return msg, sc, nil
}

// scratchMessages holds the *scratch of each dynamic message type
// (checkPayload), about scratchTypes of them, and a nil one for each
// other type. A type replaced by a schema push is another type, whose
// pool goes unused: once there are more than maxScratchTypes, they are
// all dropped.
var (
	scratchMessages sync.Map
	scratchTypes    atomic.Int64
)

const maxScratchTypes = 4096

// scratch is checkPayload's pool of cleared messages of one type.
type scratch struct {
	pool    sync.Pool
	partial bool // no required field can occur in the type's messages
}

// scratchFor returns mt's pool, or nil for a type whose messages are not
// dynamicpb ones.
func scratchFor(mt protoreflect.MessageType) *scratch {
	if v, ok := scratchMessages.Load(mt); ok {
		return v.(*scratch)
	}
	var sc *scratch
	if _, dynamic := mt.Zero().Interface().(*dynamicpb.Message); dynamic {
		sc = &scratch{
			pool:    sync.Pool{New: func() any { return mt.New().Interface() }},
			partial: !mayRequire(mt.Descriptor(), map[protoreflect.FullName]bool{}),
		}
	}
	v, loaded := scratchMessages.LoadOrStore(mt, sc)
	if !loaded && scratchTypes.Add(1) > maxScratchTypes {
		// Types that schema pushes replaced would pile up: start afresh.
		scratchMessages.Clear()
		scratchTypes.Store(0)
	}
	return v.(*scratch)
}

// put clears msg, from sc's pool, and puts it back; on a nil sc (a
// message not from a pool) it does nothing.
func (sc *scratch) put(msg proto.Message) {
	if sc == nil {
		return
	}
	clearMessage(msg.ProtoReflect())
	sc.pool.Put(msg)
}

// mayRequire reports whether a message of type md can hold a required
// field: one of its own, or of a message it nests (a field, a list item,
// a map value), or of an extension (any type with extension ranges).
func mayRequire(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	if md.ExtensionRanges().Len() > 0 {
		return true
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Cardinality() == protoreflect.Required {
			return true
		}
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if m := fd.Message(); m != nil && mayRequire(m, seen) {
			return true
		}
	}
	return false
}

// clearMessage clears every field of m and its unknown fields, keeping
// what m allocated to hold them. A field left in a dynamicpb message's
// map is one that is not populated (a zero value, an empty list), which
// reads as cleared.
func clearMessage(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		m.Clear(fd)
		return true
	})
	if m.GetUnknown() != nil {
		m.SetUnknown(nil)
	}
}

var errTooDeep = fmt.Errorf("%w: the payload nests messages more than %d deep (google.protobuf.Any, Struct, Value and ListValue count as messages), the limit", broker.ErrInvalidEvent, maxPayloadDepth)

// checkDepth refuses a payload whose messages nest more than
// maxPayloadDepth deep, counting what google.protobuf.Any values hold.
// decodePayload bounds the nesting of the message itself, but an Any's
// contents are opaque bytes to it, which every rendering decodes again,
// level by level: unbounded, that cost grows with the square of the
// depth. This walks the encoded bytes b of a message of type md, at depth
// (the payload itself is at 1), without copying or decoding them: a
// nested message is a slice of its parent's bytes, skipped over there and
// walked once here, so the walk costs time linear in len(b) whatever the
// nesting. Malformed bytes and unknown types are left to the decoding and
// rendering that follow, which report them.
func checkDepth(types TypeResolver, md protoreflect.MessageDescriptor, b []byte, depth int) error {
	if depth > maxPayloadDepth {
		return errTooDeep
	}
	isAny := md.FullName() == "google.protobuf.Any"
	var typeURL string
	var value []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		var v []byte
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.StartGroupType:
			v, n = protowire.ConsumeGroup(num, b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil
		}
		b = b[n:]
		if v == nil {
			continue
		}
		if isAny {
			switch num {
			case 1:
				typeURL = string(v)
			case 2:
				value = v
			}
			continue
		}
		if sub := fieldMessageByNumber(types, md, num); sub != nil {
			if err := checkDepth(types, sub, v, depth+1); err != nil {
				return err
			}
		}
	}
	if isAny && value != nil {
		if mt, err := types.FindMessageByURL(typeURL); err == nil {
			return checkDepth(types, mt.Descriptor(), value, depth+1)
		}
	}
	return nil
}

// fieldMessageByNumber is the message type field num of md holds (a map's
// entry type for a map, whose values are then walked in turn), or nil for
// scalars and unknown fields. Extensions are found through types.
func fieldMessageByNumber(types TypeResolver, md protoreflect.MessageDescriptor, num protowire.Number) protoreflect.MessageDescriptor {
	fd := md.Fields().ByNumber(num)
	if fd == nil && md.ExtensionRanges().Has(num) {
		if xt, err := types.FindExtensionByNumber(md.FullName(), num); err == nil {
			fd = xt.TypeDescriptor()
		}
	}
	if fd == nil {
		return nil
	}
	if k := fd.Kind(); k == protoreflect.MessageKind || k == protoreflect.GroupKind {
		return fd.Message()
	}
	return nil
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
//
// An idempotency key is scoped to the publisher (scope: its credentials'
// rate key, "" for everyone alike): two publishers may use the same key
// on a topic without one's event swallowing the other's.
func (p *publisher) newEvent(req *heraldv1.PublishRequest, scope string) (*broker.Event, error) {
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
	if ev.IdempotencyKey != "" {
		ev.IdempotencyKey = scopedKey(scope, ev.IdempotencyKey)
		ev.Fingerprint = fingerprint(ev)
	}
	if !p.typeURLs.allowed(ev.TypeURL) {
		return nil, fmt.Errorf("%w: payload type URL %q: this server accepts only type URLs starting with %s", broker.ErrInvalidEvent, broker.Printable(ev.TypeURL), strings.Join(p.typeURLs.prefixes, " or "))
	}
	mt, err := payloadType(p.typeURLs, ev.TypeURL)
	if err != nil {
		return nil, err
	}
	if md := mt.Descriptor(); wireCheckable(md) && wireCheck(md, ev.Payload, maxPayloadDepth) {
		// Nothing to validate, and the walk of its bytes vouches that it
		// decodes and renders (wirecheck.go). What the walk does not
		// accept is decoded below, which says what is wrong.
		return ev, nil
	}
	msg, sc, err := checkPayload(p.typeURLs, mt, ev.TypeURL, ev.Payload)
	if err != nil {
		return nil, err
	}
	defer sc.put(msg)
	if err := validatePayload(p.types, msg); err != nil {
		return nil, err
	}
	// Refuse what cannot be rendered as JSON. Most types can always be
	// rendered, or once their timestamps and durations are in range: the
	// hub renders those on first delivery, so an event no one receives
	// is never rendered. The others are rendered here, once.
	if m := msg.ProtoReflect(); !planFor(m.Descriptor()).renders(m) {
		if err := checkDepth(p.typeURLs, m.Descriptor(), ev.Payload, 1); err != nil {
			return nil, err
		}
		if pe.r.json, err = renderJSON(p.typeURLs, msg, protojson.MarshalOptions{}); err != nil {
			return nil, err
		}
	}
	return ev, nil
}

// scopedKey is an idempotency key as the broker compares it: the
// publisher's scope, hashed to a fixed width (so that no scope is a prefix
// of another, and no identity is stored in the broker), then the key.
func scopedKey(scope, key string) string {
	if scope == "" {
		return key
	}
	sum := sha256.Sum256([]byte(scope))
	return hex.EncodeToString(sum[:8]) + ":" + key
}

// fingerprint identifies what an event holds, for telling a publisher's
// retry (the same event again) from a reuse of its key for another event:
// 16 bytes of SHA-256 over the type, type URL, payload and attributes, in
// hex (the brokers keep it in places that want printable ASCII).
func fingerprint(ev *broker.Event) string {
	h := sha256.New()
	field := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(ev.Type)
	field(ev.TypeURL)
	field(string(ev.Payload))
	keys := make([]string, 0, len(ev.Attributes))
	for k := range ev.Attributes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		field(k)
		field(ev.Attributes[k])
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

package bridge

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/heraldhq/herald/internal/broker"
)

// Filters: a subscription may carry a CEL expression (filter=...) over its
// events' payload (the typed message, fields by their protobuf names;
// google.protobuf.Struct payloads as maps), type, topic and attributes.
// Each node compiles each distinct expression once (filterCache), turns an
// event's payload into CEL values once for all filters, and evaluates each
// distinct filter once per event (rendered.results): subscribers sharing a
// filter share its result, as they share frames. A filter only ever
// removes events: it never widens what a subscription's grants allow.

// Bounds of a filter expression.
const (
	maxFilterLen     = 1024
	filterCostLimit  = 10_000 // CEL's runtime cost units, per evaluation
	maxCachedFilters = 4096
	filterRecursion  = 32
)

// A filter is one compiled expression, shared by every subscription on the
// node that asked for the same text.
type filter struct {
	text string
	prog cel.Program
}

// filterCache compiles each distinct expression once.
type filterCache struct {
	env *cel.Env

	mu sync.Mutex
	m  map[string]*filter
}

func newFilterCache() *filterCache {
	env, err := cel.NewEnv(
		cel.Variable("payload", cel.DynType),
		cel.Variable("type", cel.StringType),
		cel.Variable("topic", cel.StringType),
		cel.Variable("attributes", cel.MapType(cel.StringType, cel.StringType)),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserRecursionLimit(filterRecursion),
		cel.ParserExpressionSizeLimit(maxFilterLen),
		ext.Strings(),
	)
	if err != nil {
		panic(fmt.Sprintf("bridge: the filter environment: %v", err)) // a bug, found by every test
	}
	return &filterCache{env: env, m: make(map[string]*filter)}
}

// compile returns the filter for text, compiling it on first use. Its
// errors are ErrBadRequest naming the position.
func (c *filterCache) compile(text string) (*filter, error) {
	if len(text) > maxFilterLen {
		return nil, fmt.Errorf("%w: filter is %d bytes, longer than the limit of %d", broker.ErrBadRequest, len(text), maxFilterLen)
	}
	c.mu.Lock()
	f, ok := c.m[text]
	c.mu.Unlock()
	if ok {
		return f, nil
	}
	ast, iss := c.env.Compile(text)
	if err := iss.Err(); err != nil {
		return nil, fmt.Errorf("%w: filter: %s", broker.ErrBadRequest, strings.ReplaceAll(strings.TrimPrefix(err.Error(), "ERROR: "), "\n", " "))
	}
	if t := ast.OutputType(); t != cel.BoolType && t != cel.DynType {
		return nil, fmt.Errorf("%w: filter: the expression is of type %s; it must be a condition (true or false)", broker.ErrBadRequest, t)
	}
	prog, err := c.env.Program(ast, cel.CostLimit(filterCostLimit), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, fmt.Errorf("%w: filter: %v", broker.ErrBadRequest, err)
	}
	f = &filter{text: text, prog: prog}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[text]; ok {
		return prev, nil
	}
	if len(c.m) >= maxCachedFilters {
		// Filters in use stay alive through their subscriptions; the
		// cache only saves compiling them again.
		clear(c.m)
	}
	c.m[text] = f
	return f, nil
}

// A filterResult is what one filter made of one event, evaluated once.
type filterResult struct {
	once sync.Once
	pass bool
}

// matches reports whether ev passes f, evaluating f at most once per event
// on this node. An expression that fails on an event (a missing field, a
// payload of another type, the cost limit) drops the event for the
// subscription, and is counted.
func (h *Hub) matches(ev *broker.Event, f *filter) bool {
	rd := renderedOf(ev)
	rd.mu.Lock()
	r := rd.results[f]
	if r == nil {
		if rd.results == nil {
			rd.results = make(map[*filter]*filterResult, 1)
		}
		r = &filterResult{}
		rd.results[f] = r
	}
	rd.mu.Unlock()
	r.once.Do(func() {
		rd.varsOnce.Do(func() { rd.vars = h.filterVars(ev) })
		out, _, err := f.prog.Eval(rd.vars)
		r.pass = err == nil && out == types.True
		if err != nil {
			h.metrics.filterErrors.Inc()
		}
	})
	return r.pass
}

// filterVars are the variables a filter sees for ev, built once per event.
func (h *Hub) filterVars(ev *broker.Event) interpreter.Activation {
	msg, err := decodePayload(h.types, ev.TypeURL, ev.Payload)
	if err != nil {
		msg = nil // unknown here: every field test fails, and the event is dropped
	}
	return filterActivation(h.types, ev.Type, ev.Topic, ev.Attributes, msg)
}

// filterActivation binds a filter's variables: msg is the payload (nil:
// none).
func filterActivation(resolver TypeResolver, typ, topic string, attrs map[string]string, msg proto.Message) interpreter.Activation {
	if attrs == nil {
		attrs = map[string]string{}
	}
	var payload any = map[string]any{}
	if msg != nil {
		payload = celValue(resolver, msg.ProtoReflect(), 0)
	}
	vars := map[string]any{
		"type": types.String(typ), "topic": types.String(topic),
		"attributes": types.DefaultTypeAdapter.NativeToValue(attrs),
		"payload":    types.DefaultTypeAdapter.NativeToValue(payload),
	}
	act, err := interpreter.NewActivation(vars)
	if err != nil {
		panic(err) // a map is always an activation
	}
	return act
}

// celValue is a message as CEL sees it in a filter: a map by the fields'
// protobuf names. Set fields and scalars (with their defaults) are there;
// unset message fields and oneof members are not, so that has() tells.
// Enums are their names, as in the JSON subscribers get; well-known types
// are their natural values (a Timestamp a timestamp, a Struct a map).
func celValue(types TypeResolver, m protoreflect.Message, depth int) any {
	if depth > maxPayloadDepth {
		return nil // validated on publish; a guard for nodes that did not
	}
	md := m.Descriptor()
	if md.FullName().Parent() == "google.protobuf" {
		if v, ok := wellKnownValue(types, m, depth); ok {
			return v
		}
	}
	out := make(map[string]any, md.Fields().Len())
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if (fd.ContainingOneof() != nil || (fd.Message() != nil && !fd.IsList() && !fd.IsMap()) || fd.HasPresence()) && !m.Has(fd) {
			continue
		}
		out[string(fd.Name())] = celField(types, fd, m.Get(fd), depth)
	}
	return out
}

func celField(types TypeResolver, fd protoreflect.FieldDescriptor, v protoreflect.Value, depth int) any {
	switch {
	case fd.IsList():
		l := v.List()
		out := make([]any, l.Len())
		for i := range out {
			out[i] = celScalar(types, fd, l.Get(i), depth)
		}
		return out
	case fd.IsMap():
		out := make(map[any]any, v.Map().Len())
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			out[k.Interface()] = celScalar(types, fd.MapValue(), mv, depth)
			return true
		})
		return out
	}
	return celScalar(types, fd, v, depth)
}

func celScalar(types TypeResolver, fd protoreflect.FieldDescriptor, v protoreflect.Value, depth int) any {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
		return int64(v.Enum())
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return celValue(types, v.Message(), depth+1)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return v.Int()
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return v.Uint()
	case protoreflect.FloatKind:
		return v.Float()
	}
	return v.Interface()
}

// wellKnownValue converts the well-known types that have a natural CEL
// value; ok is false for the others, which are maps like any message.
func wellKnownValue(types TypeResolver, m protoreflect.Message, depth int) (any, bool) {
	md := m.Descriptor()
	fields := md.Fields()
	switch md.Name() {
	case "Timestamp":
		return time.Unix(m.Get(fields.ByNumber(1)).Int(), m.Get(fields.ByNumber(2)).Int()).UTC(), true
	case "Duration":
		return time.Duration(m.Get(fields.ByNumber(1)).Int())*time.Second + time.Duration(m.Get(fields.ByNumber(2)).Int()), true
	case "Struct":
		out := map[string]any{}
		m.Get(fields.ByNumber(1)).Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			out[k.String()] = celValue(types, v.Message(), depth+1)
			return true
		})
		return out, true
	case "ListValue":
		l := m.Get(fields.ByNumber(1)).List()
		out := make([]any, l.Len())
		for i := range out {
			out[i] = celValue(types, l.Get(i).Message(), depth+1)
		}
		return out, true
	case "Value":
		od := m.WhichOneof(md.Oneofs().ByName("kind"))
		if od == nil {
			return nil, true
		}
		switch od.Name() {
		case "null_value":
			return nil, true
		case "struct_value", "list_value":
			return celValue(types, m.Get(od).Message(), depth+1), true
		}
		return m.Get(od).Interface(), true
	case "DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value", "UInt32Value", "BoolValue", "StringValue", "BytesValue":
		fd := fields.ByNumber(1)
		return celScalar(types, fd, m.Get(fd), depth), true
	case "Any":
		mt, err := types.FindMessageByURL(m.Get(fields.ByNumber(1)).String())
		if err != nil {
			return map[string]any{}, true
		}
		inner := mt.New()
		if err := (proto.UnmarshalOptions{Resolver: types, RecursionLimit: maxPayloadDepth}).Unmarshal(m.Get(fields.ByNumber(2)).Bytes(), inner.Interface()); err != nil {
			return map[string]any{}, true
		}
		return celValue(types, inner, depth+1), true
	}
	return nil, false
}

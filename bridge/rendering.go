package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/heraldhq/herald/internal/broker"
)

// A Rendering is a subscriber's choice of JSON form for event data, from
// the query parameters of GET /v1/events:
//
//	proto_names=true       field names as in the .proto file (order_id), not lowerCamelCase (orderId)
//	enum_numbers=true      enum values as numbers, not names
//	emit_unpopulated=true  include fields that hold their zero value
//	fields=a,b.c           only these fields (FieldMask semantics; a path may go
//	                       through singular message fields; proto or JSON names)
//	envelope=true          no event: line, so that EventSource's onmessage sees
//	                       every event; data is {"type": "<event type>", "payload": <JSON>}
//
// Each distinct rendering is encoded once per event and its frame shared by
// every subscriber that asked for it (render.go). A nil *Rendering is the
// default form.
type Rendering struct {
	ProtoNames      bool
	EnumNumbers     bool
	EmitUnpopulated bool
	Fields          []string
	// Envelope sends every event unnamed, its type inside the data.
	Envelope bool

	k string // cache key, set by the hub when the subscriber registers
}

// renderParams are the query parameters that choose a Rendering.
var renderParams = []string{"proto_names", "enum_numbers", "emit_unpopulated", "fields", "envelope"}

func parseRendering(q url.Values) (*Rendering, error) {
	var r Rendering
	for _, b := range []struct {
		name string
		dst  *bool
	}{{"proto_names", &r.ProtoNames}, {"enum_numbers", &r.EnumNumbers}, {"emit_unpopulated", &r.EmitUnpopulated}, {"envelope", &r.Envelope}} {
		v := q.Get(b.name)
		if v == "" {
			continue
		}
		on, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %s=%q: want true or false", broker.ErrBadRequest, b.name, broker.Printable(v))
		}
		*b.dst = on
	}
	for _, list := range q["fields"] {
		for _, p := range strings.Split(list, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			segs := strings.Split(p, ".")
			if len(segs) > maxFieldSegments {
				return nil, fmt.Errorf("%w: fields: %q has more than %d segments", broker.ErrBadRequest, broker.Printable(p), maxFieldSegments)
			}
			for _, seg := range segs {
				if !validIdent(seg) {
					return nil, fmt.Errorf("%w: fields: %q is not a field path like a or a.b", broker.ErrBadRequest, broker.Printable(p))
				}
			}
			if slices.Contains(r.Fields, p) {
				continue
			}
			if len(r.Fields) == maxFieldPaths {
				return nil, fmt.Errorf("%w: fields: more than %d distinct field paths", broker.ErrBadRequest, maxFieldPaths)
			}
			r.Fields = append(r.Fields, p)
		}
	}
	if !r.ProtoNames && !r.EnumNumbers && !r.EmitUnpopulated && len(r.Fields) == 0 && !r.Envelope {
		return nil, nil
	}
	return &r, nil
}

func validIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// json reports whether the rendering changes the payload's JSON, beyond
// wrapping it in an envelope.
func (r *Rendering) json() bool {
	return r.ProtoNames || r.EnumNumbers || r.EmitUnpopulated || len(r.Fields) > 0
}

// key identifies the rendering among those of one event.
func (r *Rendering) key() string {
	if r.k == "" {
		r.k = fmt.Sprintf("%t%t%t%t%s", r.ProtoNames, r.EnumNumbers, r.EmitUnpopulated, r.Envelope, strings.Join(r.Fields, ","))
	}
	return r.k
}

// MessageRanger is a TypeResolver that can list its types. The SSE handler
// uses it to refuse field paths that no known type has, unless the
// resolver is a FieldPathChecker.
type MessageRanger interface {
	RangeMessages(func(protoreflect.MessageType) bool)
}

// A FieldPathChecker is a TypeResolver that can tell whether any of its
// message types has a field path (by proto or JSON names), in time that
// does not grow with the number of types it knows.
type FieldPathChecker interface {
	HasFieldPath(segments []string) bool
}

// Bounds of a subscription's fields parameter.
const (
	maxFieldPaths    = 32
	maxFieldSegments = 8
)

// checkFields refuses a field path that exists in no known message type.
// The SSE handler calls it after authentication. A FieldPathChecker
// answers at once; otherwise every type is looked at, stopping when the
// client has gone.
func checkFields(ctx context.Context, types TypeResolver, paths []string) error {
	for _, p := range paths {
		segs := strings.Split(p, ".")
		known := false
		switch t := types.(type) {
		case FieldPathChecker:
			known = t.HasFieldPath(segs)
		case MessageRanger:
			t.RangeMessages(func(mt protoreflect.MessageType) bool {
				_, known = resolvePath(mt.Descriptor(), segs)
				return !known && ctx.Err() == nil
			})
			if err := ctx.Err(); err != nil {
				return err
			}
		default:
			known = true
		}
		if !known {
			return fmt.Errorf("%w: fields: no known message type has the field path %q", broker.ErrBadRequest, broker.Printable(p))
		}
	}
	return nil
}

// resolvePath finds the fields of a path in md, by proto or JSON name. Only
// the last field may be repeated, a map or a scalar.
func resolvePath(md protoreflect.MessageDescriptor, segs []string) ([]protoreflect.FieldDescriptor, bool) {
	var out []protoreflect.FieldDescriptor
	for i, seg := range segs {
		if md == nil {
			return nil, false
		}
		fd := md.Fields().ByName(protoreflect.Name(seg))
		if fd == nil {
			fd = md.Fields().ByJSONName(seg)
		}
		if fd == nil {
			return nil, false
		}
		out = append(out, fd)
		if i < len(segs)-1 {
			if fd.Message() == nil || fd.IsList() || fd.IsMap() {
				return nil, false
			}
			md = fd.Message()
			if renderedWhole(md) {
				// The rest of the path is inside one JSON value: the
				// field is kept whole.
				return out, true
			}
		}
	}
	return out, true
}

// renderedWhole reports whether md is a well-known type that protojson
// renders in a form of its own (a string, a number, a bare JSON value or
// an object of its own making) rather than as an object of its fields: a
// field mask cannot select within it, and clearing some of its fields
// could leave it unrenderable (a Value with its kind cleared).
func renderedWhole(md protoreflect.MessageDescriptor) bool {
	if md.FullName().Parent() != "google.protobuf" {
		return false
	}
	switch md.Name() {
	case "Any", "Timestamp", "Duration", "Struct", "Value", "ListValue", "FieldMask", "Empty":
		return true
	}
	return isWrapper(md)
}

// isWrapper reports whether md is one of google.protobuf's wrappers
// (Int64Value, StringValue...), which JSON renders as their value alone.
func isWrapper(md protoreflect.MessageDescriptor) bool {
	if md.FullName().Parent() != "google.protobuf" {
		return false
	}
	switch md.Name() {
	case "DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value", "UInt32Value",
		"BoolValue", "StringValue", "BytesValue":
		return true
	}
	return false
}

// A fieldTree is a field mask resolved against one message type: a nil
// child keeps the whole field. Paths that do not exist in the type select
// nothing.
type fieldTree map[protoreflect.FieldNumber]fieldTree

func buildTree(md protoreflect.MessageDescriptor, paths []string) fieldTree {
	tree := fieldTree{}
	for _, p := range paths {
		fds, ok := resolvePath(md, strings.Split(p, "."))
		if !ok {
			continue
		}
		n := tree
		for i, fd := range fds {
			child, seen := n[fd.Number()]
			if seen && child == nil {
				break // a shorter path already keeps the whole field
			}
			if i == len(fds)-1 {
				n[fd.Number()] = nil
				break
			}
			if child == nil {
				child = fieldTree{}
				n[fd.Number()] = child
			}
			n = child
		}
	}
	return tree
}

// project clears every field of m not in tree (FieldMask semantics).
func project(m protoreflect.Message, tree fieldTree) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		child, keep := tree[fd.Number()]
		switch {
		case !keep:
			m.Clear(fd)
		case child != nil:
			project(m.Mutable(fd).Message(), child)
		}
		return true
	})
}

// filterJSON keeps only the members of a rendered object that tree
// selects, in their order.
func filterJSON(data []byte, md protoreflect.MessageDescriptor, tree fieldTree, protoNames bool) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // the opening brace
		return nil, err
	}
	out := []byte{'{'}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		key, _ := t.(string)
		fd := md.Fields().ByJSONName(key)
		if protoNames {
			fd = md.Fields().ByName(protoreflect.Name(key))
		}
		if fd == nil {
			continue
		}
		child, keep := tree[fd.Number()]
		if !keep {
			continue
		}
		if child != nil && len(v) > 0 && v[0] == '{' {
			if v, err = filterJSON(v, fd.Message(), child, protoNames); err != nil {
				return nil, err
			}
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		k, _ := json.Marshal(key)
		out = append(append(append(out, k...), ':'), v...)
	}
	return append(out, '}'), nil
}

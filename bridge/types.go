package bridge

import (
	"bytes"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
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
	name := messageName(typeURL)
	mt, err := types.FindMessageByURL(typeURL)
	if err != nil {
		return nil, fmt.Errorf("%w: payload type %q is not known to this server (push its schema with herald schemas push, or list known types with GET /v1/schemas)", ErrInvalidEvent, name)
	}
	msg := mt.New().Interface()
	if err := (proto.UnmarshalOptions{Resolver: types}).Unmarshal(payload, msg); err != nil {
		return nil, fmt.Errorf("%w: payload does not parse as %s: %v", ErrInvalidEvent, name, err)
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
	var violations *ViolationsError
	if err == nil || errors.As(err, &violations) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrInvalidEvent, err)
}

// renderJSON renders a payload as single-line protojson, compacted:
// protojson varies its whitespace from build to build on purpose, and
// subscribers should get the same bytes from every Herald.
func renderJSON(types TypeResolver, msg proto.Message, opts protojson.MarshalOptions) ([]byte, error) {
	opts.Resolver = types
	out, err := opts.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("%w: payload of type %s cannot be rendered as JSON: %v", ErrInvalidEvent, msg.ProtoReflect().Descriptor().FullName(), err)
	}
	return compactJSON(out), nil
}

// compactJSON drops the whitespace between the tokens of valid JSON, in
// place: a quarter of the cost of json.Compact on the publish path.
func compactJSON(b []byte) []byte {
	if !bytes.ContainsAny(b, " \t\n\r") {
		return b
	}
	out := b[:0]
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\n' || c == '\t' || c == '\r':
			continue
		}
		out = append(out, c)
	}
	return out
}

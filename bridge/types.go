package bridge

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// A TypeResolver finds payload message types. It is the seam for the
// schema registry: the compiled-in types today, schemas loaded at run time
// later. Implementations must be safe for concurrent use.
type TypeResolver interface {
	protoregistry.MessageTypeResolver
	protoregistry.ExtensionTypeResolver
}

// renderJSON decodes a payload of type typeURL and renders it as
// single-line protojson. Its errors name the type and the problem.
func renderJSON(types TypeResolver, typeURL string, payload []byte) ([]byte, error) {
	name := messageName(typeURL)
	mt, err := types.FindMessageByURL(typeURL)
	if err != nil {
		return nil, fmt.Errorf("%w: payload type %q is not known to this server", ErrInvalidEvent, name)
	}
	msg := mt.New().Interface()
	if err := (proto.UnmarshalOptions{Resolver: types}).Unmarshal(payload, msg); err != nil {
		return nil, fmt.Errorf("%w: payload does not parse as %s: %v", ErrInvalidEvent, name, err)
	}
	out, err := protojson.MarshalOptions{Resolver: types}.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("%w: payload of type %s cannot be rendered as JSON: %v", ErrInvalidEvent, name, err)
	}
	return out, nil
}

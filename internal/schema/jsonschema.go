package schema

import (
	"google.golang.org/protobuf/reflect/protoreflect"
)

// JSONSchema describes the protojson form of md (Herald's default
// rendering: lowerCamelCase names, enums as names, 64-bit integers as
// strings, zero values omitted) as a JSON Schema (draft 2020-12). Message
// types used by md appear once under $defs and are referenced.
func JSONSchema(md protoreflect.MessageDescriptor) map[string]any {
	defs := map[string]any{}
	root := messageSchema(md, defs)
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["title"] = string(md.FullName())
	if len(defs) > 0 {
		root["$defs"] = defs
	}
	return root
}

// messageSchema returns the schema of md itself, adding the messages it
// refers to to defs.
func messageSchema(md protoreflect.MessageDescriptor, defs map[string]any) map[string]any {
	if s, ok := wellKnown(md); ok {
		return s
	}
	props := map[string]any{}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		props[fd.JSONName()] = fieldSchema(fd, defs)
	}
	return map[string]any{"type": "object", "properties": props, "additionalProperties": false}
}

func fieldSchema(fd protoreflect.FieldDescriptor, defs map[string]any) map[string]any {
	switch {
	case fd.IsMap():
		return map[string]any{"type": "object", "additionalProperties": singularSchema(fd.MapValue(), defs)}
	case fd.IsList():
		return map[string]any{"type": "array", "items": singularSchema(fd, defs)}
	}
	return singularSchema(fd, defs)
}

func singularSchema(fd protoreflect.FieldDescriptor, defs map[string]any) map[string]any {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return map[string]any{"type": "boolean"}
	case protoreflect.StringKind:
		return map[string]any{"type": "string"}
	case protoreflect.BytesKind:
		return map[string]any{"type": "string", "contentEncoding": "base64"}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return map[string]any{"type": "integer"}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return map[string]any{"type": "string", "pattern": "^-?[0-9]+$", "description": "64-bit integer, as a string"}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return map[string]any{"type": "number"}
	case protoreflect.EnumKind:
		if fd.Enum().FullName() == "google.protobuf.NullValue" {
			return map[string]any{"type": "null"}
		}
		var names []any
		vals := fd.Enum().Values()
		for i := range vals.Len() {
			names = append(names, string(vals.Get(i).Name()))
		}
		return map[string]any{"type": "string", "enum": names}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		md := fd.Message()
		if s, ok := wellKnown(md); ok {
			return s
		}
		name := string(md.FullName())
		if _, ok := defs[name]; !ok {
			defs[name] = map[string]any{} // placeholder: breaks recursion
			defs[name] = messageSchema(md, defs)
		}
		return map[string]any{"$ref": "#/$defs/" + name}
	}
	return map[string]any{}
}

// wellKnown gives the special JSON forms of the well-known types.
func wellKnown(md protoreflect.MessageDescriptor) (map[string]any, bool) {
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		return map[string]any{"type": "string", "format": "date-time"}, true
	case "google.protobuf.Duration":
		return map[string]any{"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"}, true
	case "google.protobuf.FieldMask":
		return map[string]any{"type": "string"}, true
	case "google.protobuf.Struct":
		return map[string]any{"type": "object"}, true
	case "google.protobuf.Value":
		return map[string]any{}, true
	case "google.protobuf.ListValue":
		return map[string]any{"type": "array"}, true
	case "google.protobuf.Empty":
		return map[string]any{"type": "object", "additionalProperties": false}, true
	case "google.protobuf.Any":
		return map[string]any{"type": "object", "properties": map[string]any{"@type": map[string]any{"type": "string"}}, "required": []any{"@type"}}, true
	case "google.protobuf.BoolValue":
		return map[string]any{"type": "boolean"}, true
	case "google.protobuf.StringValue":
		return map[string]any{"type": "string"}, true
	case "google.protobuf.BytesValue":
		return map[string]any{"type": "string", "contentEncoding": "base64"}, true
	case "google.protobuf.Int32Value", "google.protobuf.UInt32Value":
		return map[string]any{"type": "integer"}, true
	case "google.protobuf.Int64Value", "google.protobuf.UInt64Value":
		return map[string]any{"type": "string", "pattern": "^-?[0-9]+$"}, true
	case "google.protobuf.FloatValue", "google.protobuf.DoubleValue":
		return map[string]any{"type": "number"}, true
	}
	return nil, false
}

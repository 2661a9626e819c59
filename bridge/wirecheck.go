package bridge

import (
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// A payload of most types is checked on the wire: walked field by field
// against its type without building a message. Decoding into a message, a
// dynamicpb one above all (a type pushed at run time), costs a map entry
// and a boxed value per field for a message that is dropped at once; the
// walk allocates nothing.
//
// The walk only ever accepts: what it accepts, decoding and rendering
// would accept too. Whatever it does not, the publish path decodes, and
// decoding is what says what is wrong. It takes only types for which the
// decoded message would have no further use: no protovalidate rules, no
// proto2 required fields and no extensions anywhere (Unmarshal resolves
// and decodes those), and nothing rendering must vouch for but the ranges
// of Timestamps and Durations, which it checks itself.

// wireCheckable reports whether a payload of md is checked on the wire,
// as its render plan records.
func wireCheckable(md protoreflect.MessageDescriptor) bool { return planFor(md).wire }

// plainClosure reports whether md and every message type its fields reach
// declare no extensions, no required fields, and no options a validator
// could read rules from: none of their options carries an extension or
// an unknown field (protovalidate's rules are extensions of the options).
// Nor is any of them a Struct, Value or ListValue, whose values rendering
// checks.
func plainClosure(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[md.FullName()] {
		return true
	}
	seen[md.FullName()] = true
	if md.ExtensionRanges().Len() > 0 || md.RequiredNumbers().Len() > 0 || hasExtensions(md.Options()) {
		return false
	}
	if md.ParentFile().Syntax() == protoreflect.Editions {
		return false // features decide UTF-8 checks and field presence
	}
	if leaf := wellKnownLeaf(md); leaf == leafValue || leaf == leafStruct || leaf == leafList {
		return false
	}
	for i := range md.Oneofs().Len() {
		if hasExtensions(md.Oneofs().Get(i).Options()) {
			return false
		}
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if hasExtensions(fd.Options()) {
			return false
		}
		if m := fd.Message(); m != nil && !plainClosure(m, seen) {
			return false
		}
	}
	return true
}

// hasExtensions reports whether a descriptor's options carry an extension
// or bytes of one not resolved.
func hasExtensions(opts protoreflect.ProtoMessage) bool {
	if opts == nil {
		return false
	}
	m := opts.ProtoReflect()
	if !m.IsValid() {
		return false
	}
	if len(m.GetUnknown()) > 0 {
		return true
	}
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		found = fd.IsExtension()
		return !found
	})
	return found
}

// wireCheck reports whether b is a message of md that decoding would
// accept with a RecursionLimit of depth, and whose Timestamps and
// Durations render. It counts nesting as proto.Unmarshal does: one level
// for each message and group, and one more for each map entry. It gives
// up on a singular message field that occurs twice in one message, which
// decoding merges, and on one past a message's 64th field, which it does
// not track.
func wireCheck(md protoreflect.MessageDescriptor, b []byte, depth int) bool {
	if depth--; depth < 0 {
		return false
	}
	leaf := wellKnownLeaf(md)
	var seconds, nanos int64 // of a Timestamp or Duration: the last of each
	var seen uint64          // singular message fields met, by index
	fields := md.Fields()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return false
		}
		b = b[n:]
		n = -1
		if fd := fields.ByNumber(num); fd != nil {
			switch {
			case fd.IsMap():
				n = wireMapEntry(fd, typ, b, depth)
			case fd.IsList():
				n = wireListValue(fd, typ, b, depth)
			default:
				if fd.Message() != nil && typ == wireTypeOf(fd.Kind()) {
					i := fd.Index()
					if i >= 64 || seen&(1<<i) != 0 {
						return false
					}
					seen |= 1 << i
				}
				if leaf != leafNone && (num == 1 || num == 2) && typ == protowire.VarintType {
					// A Timestamp's or Duration's seconds or nanos.
					v, m := protowire.ConsumeVarint(b)
					switch {
					case m < 0:
						return false
					case num == 1:
						seconds = int64(v)
					default:
						nanos = int64(int32(v))
					}
					n = m
					break
				}
				n = wireValue(fd, typ, b, depth)
			}
			if n == wireRefused {
				return false
			}
		}
		if n < 0 { // an unknown field, or a known one with another wire type
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return false
			}
		}
		b = b[n:]
	}
	switch leaf {
	case leafTimestamp:
		return timestampRenders(seconds, nanos)
	case leafDuration:
		return durationRenders(seconds, nanos)
	}
	return true
}

// wireRefused is what the walk of a value returns for bytes it does not
// accept; -1 is a field to skip as unknown.
const wireRefused = -2

// wireValue walks one value of fd, which arrived with wire type typ, and
// returns its length: -1 when typ is not fd's, which makes it an unknown
// field, and wireRefused when it is not accepted.
func wireValue(fd protoreflect.FieldDescriptor, typ protowire.Type, b []byte, depth int) int {
	kind := fd.Kind()
	if typ != wireTypeOf(kind) {
		return -1
	}
	var n int
	switch typ {
	case protowire.VarintType:
		_, n = protowire.ConsumeVarint(b)
	case protowire.Fixed32Type:
		_, n = protowire.ConsumeFixed32(b)
	case protowire.Fixed64Type:
		_, n = protowire.ConsumeFixed64(b)
	case protowire.StartGroupType:
		var v []byte
		if v, n = protowire.ConsumeGroup(fd.Number(), b); n >= 0 && !wireCheck(fd.Message(), v, depth) {
			return wireRefused
		}
	case protowire.BytesType:
		var v []byte
		if v, n = protowire.ConsumeBytes(b); n < 0 {
			break
		}
		switch kind {
		case protoreflect.StringKind:
			if enforcesUTF8(fd) && !utf8.Valid(v) {
				return wireRefused
			}
		case protoreflect.MessageKind:
			if !wireCheck(fd.Message(), v, depth) {
				return wireRefused
			}
		}
	}
	if n < 0 {
		return wireRefused
	}
	return n
}

// wireListValue walks one value of the repeated field fd: an element, or
// for a scalar of fixed or varint width, a packed run of them.
func wireListValue(fd protoreflect.FieldDescriptor, typ protowire.Type, b []byte, depth int) int {
	elem := wireTypeOf(fd.Kind())
	if typ != protowire.BytesType || elem == protowire.BytesType {
		return wireValue(fd, typ, b, depth)
	}
	if elem == protowire.StartGroupType {
		return -1
	}
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return wireRefused
	}
	for len(v) > 0 {
		var m int
		switch elem {
		case protowire.VarintType:
			_, m = protowire.ConsumeVarint(v)
		case protowire.Fixed32Type:
			_, m = protowire.ConsumeFixed32(v)
		default:
			_, m = protowire.ConsumeFixed64(v)
		}
		if m < 0 {
			return wireRefused
		}
		v = v[m:]
	}
	return n
}

// wireMapEntry walks one entry of the map field fd. It gives up on an
// entry whose message value occurs twice, which decoding merges.
func wireMapEntry(fd protoreflect.FieldDescriptor, typ protowire.Type, b []byte, depth int) int {
	if depth--; depth < 0 {
		return wireRefused
	}
	if typ != protowire.BytesType {
		return -1
	}
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return wireRefused
	}
	key, val := fd.MapKey(), fd.MapValue()
	values := 0
	for len(v) > 0 {
		num, typ, m := protowire.ConsumeTag(v)
		if m < 0 || num > protowire.MaxValidNumber {
			return wireRefused
		}
		v = v[m:]
		m = -1
		switch num {
		case key.Number():
			m = wireValue(key, typ, v, depth)
		case val.Number():
			if val.Message() != nil && typ == protowire.BytesType {
				if values++; values > 1 {
					return wireRefused
				}
			}
			m = wireValue(val, typ, v, depth)
		}
		if m == wireRefused {
			return wireRefused
		}
		if m < 0 {
			if m = protowire.ConsumeFieldValue(num, typ, v); m < 0 {
				return wireRefused
			}
		}
		v = v[m:]
	}
	return n
}

// wireTypeOf is the wire type of a value of kind, packed runs apart.
func wireTypeOf(kind protoreflect.Kind) protowire.Type {
	switch kind {
	case protoreflect.BoolKind, protoreflect.EnumKind, protoreflect.Int32Kind, protoreflect.Sint32Kind,
		protoreflect.Uint32Kind, protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Uint64Kind:
		return protowire.VarintType
	case protoreflect.Sfixed32Kind, protoreflect.Fixed32Kind, protoreflect.FloatKind:
		return protowire.Fixed32Type
	case protoreflect.Sfixed64Kind, protoreflect.Fixed64Kind, protoreflect.DoubleKind:
		return protowire.Fixed64Type
	case protoreflect.GroupKind:
		return protowire.StartGroupType
	default: // string, bytes, message
		return protowire.BytesType
	}
}

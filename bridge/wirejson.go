package bridge

import (
	"bytes"
	"encoding/base64"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Rendering from the wire: a payload of a type checked on the wire
// (wirecheck.go) is rendered in the default JSON form, or with
// proto_names or enum_numbers (wireJSONOpts), straight from its bytes,
// without decoding it into a message first. Decoding a type pushed
// at run time builds a dynamicpb message, a map entry and a boxed value
// per field, which protojson then reads back through reflection; that was
// most of what a node spent on an event for a subscriber or two.
//
// The output is protojson.Marshal's for the decoded message, after
// compactJSON, byte for byte: fields in declaration order, under their
// JSON names; zero values of fields without presence left out; the last
// occurrence of a singular field, the last member of a oneof; list
// elements in order, packed runs or not; map entries sorted by key, the
// last of a key kept; 64-bit integers quoted, NaN and infinities as
// strings, bytes in padded base64, enums by name (NullValue as null);
// Timestamps, Durations and wrappers in their JSON forms.
// TestWireJSONMatchesProtojson holds it to that over random payloads.
//
// It gives up (false) on what it does not follow, and the caller decodes
// and renders as before: groups, messages of more than 64 fields or 16
// oneofs, values of closed enums that the enum does not declare, and
// strings that are not UTF-8 (which the check refuses already for the
// types it takes). A singular message field that occurs twice, which
// decoding merges, the check refuses, so the caller checks first.

// wireJSONOpts are the renderings other than the default that the wire
// rendering follows, as protojson.MarshalOptions has them: field names as
// in the .proto file (UseProtoNames), enum values as numbers
// (UseEnumNumbers). The others (emit_unpopulated, fields) decode.
type wireJSONOpts struct {
	protoNames, enumNumbers bool
}

// name is fd's name in the JSON.
func (o wireJSONOpts) name(fd protoreflect.FieldDescriptor) string {
	if o.protoNames {
		return fd.TextName()
	}
	return fd.JSONName()
}

// wireJSONFields bounds the fields of a message rendered from the wire:
// their positions are kept in arrays on the stack.
const (
	wireJSONFields = 64
	wireJSONOneofs = 16
)

// appendWireJSON appends the JSON form of b, a message of md that
// wireCheck accepted, and reports whether it could. md is a type checked
// on the wire (renderPlan.wire), so it reaches no Any or FieldMask.
func appendWireJSON(out []byte, md protoreflect.MessageDescriptor, b []byte, o wireJSONOpts) ([]byte, bool) {
	switch wellKnownLeaf(md) {
	case leafTimestamp:
		secs, nanos := wireSecondsNanos(b)
		return appendTimestamp(out, secs, nanos), true
	case leafDuration:
		secs, nanos := wireSecondsNanos(b)
		return appendDuration(out, secs, nanos), true
	case leafNone:
	default:
		return out, false // Struct, Value, ListValue: not taken by the check
	}
	if isWrapper(md) {
		fd := md.Fields().ByNumber(1)
		if fd == nil {
			return out, false
		}
		v, ok := wireLast(b, 1, wireTypeOf(fd.Kind()))
		switch {
		case !ok:
			return out, false
		case v == nil:
			return appendZeroJSON(out, fd, o)
		}
		out, _, ok = appendWireScalar(out, fd, v, false, o)
		return out, ok
	}

	fields := md.Fields()
	nf := fields.Len()
	if nf > wireJSONFields || md.Oneofs().Len() > wireJSONOneofs {
		return out, false
	}
	// Where each field's first and last occurrences begin (their tags),
	// plus one; and each oneof's last member met, plus one.
	var first, last [wireJSONFields]int32
	var chosen [wireJSONOneofs]int8
	for pos := 0; pos < len(b); {
		num, typ, n := protowire.ConsumeTag(b[pos:])
		if n < 0 {
			return out, false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[pos+n:])
		if m < 0 {
			return out, false
		}
		if fd := fields.ByNumber(num); fd != nil && wireTypeFits(fd, typ) {
			if fd.Kind() == protoreflect.GroupKind {
				return out, false
			}
			i := fd.Index()
			if first[i] == 0 {
				first[i] = int32(pos + 1)
			}
			last[i] = int32(pos + 1)
			if od := fd.ContainingOneof(); od != nil {
				chosen[od.Index()] = int8(i + 1)
			}
		}
		pos += n + m
	}

	out = append(out, '{')
	comma := false
	for i := range nf {
		if last[i] == 0 {
			continue
		}
		fd := fields.Get(i)
		if od := fd.ContainingOneof(); od != nil && int(chosen[od.Index()]) != i+1 {
			continue // another member came later
		}
		mark := len(out)
		if comma {
			out = append(out, ',')
		}
		var ok bool
		if out, ok = appendJSONString(out, o.name(fd)); !ok {
			return out, false
		}
		out = append(out, ':')
		var emitted bool
		switch {
		case fd.IsMap():
			out, emitted, ok = appendWireMap(out, fd, b[first[i]-1:], o)
		case fd.IsList():
			out, emitted, ok = appendWireList(out, fd, b[first[i]-1:], o)
		default:
			_, _, n := protowire.ConsumeTag(b[last[i]-1:])
			out, emitted, ok = appendWireScalar(out, fd, b[int(last[i])-1+n:], !fd.HasPresence(), o)
		}
		if !ok {
			return out, false
		}
		if !emitted {
			out = out[:mark]
			continue
		}
		comma = true
	}
	return append(out, '}'), true
}

// wireTypeFits reports whether a value of fd may arrive with wire type
// typ: its own, or a packed run for a repeated scalar. Any other makes
// the field unknown to decoding.
func wireTypeFits(fd protoreflect.FieldDescriptor, typ protowire.Type) bool {
	if fd.IsMap() {
		return typ == protowire.BytesType
	}
	elem := wireTypeOf(fd.Kind())
	if typ == elem {
		return true
	}
	return fd.IsList() && typ == protowire.BytesType && elem != protowire.StartGroupType
}

// wireLast returns the value (after its tag) of the last occurrence of
// field num with wire type typ in b, nil if there is none; false if b is
// not a message.
func wireLast(b []byte, num protowire.Number, typ protowire.Type) ([]byte, bool) {
	var last []byte
	for len(b) > 0 {
		n, t, k := protowire.ConsumeTag(b)
		if k < 0 {
			return nil, false
		}
		m := protowire.ConsumeFieldValue(n, t, b[k:])
		if m < 0 {
			return nil, false
		}
		if n == num && t == typ {
			last = b[k : k+m]
		}
		b = b[k+m:]
	}
	return last, true
}

// wireSecondsNanos returns the last seconds and nanos of a Timestamp or
// Duration on the wire, which wireCheck accepted.
func wireSecondsNanos(b []byte) (secs int64, nanos int32) {
	if v, _ := wireLast(b, 1, protowire.VarintType); v != nil {
		x, _ := protowire.ConsumeVarint(v)
		secs = int64(x)
	}
	if v, _ := wireLast(b, 2, protowire.VarintType); v != nil {
		x, _ := protowire.ConsumeVarint(v)
		nanos = int32(x)
	}
	return secs, nanos
}

// appendTimestamp appends a Timestamp as protojson does: RFC 3339 in UTC
// with 0, 3, 6 or 9 fractional digits.
func appendTimestamp(out []byte, secs int64, nanos int32) []byte {
	out = append(out, '"')
	out = time.Unix(secs, int64(nanos)).UTC().AppendFormat(out, "2006-01-02T15:04:05.000000000")
	out = bytes.TrimSuffix(out, []byte("000"))
	out = bytes.TrimSuffix(out, []byte("000"))
	out = bytes.TrimSuffix(out, []byte(".000"))
	return append(out, 'Z', '"')
}

// appendDuration appends a Duration as protojson does: seconds with 0, 3,
// 6 or 9 fractional digits and the suffix s.
func appendDuration(out []byte, secs int64, nanos int32) []byte {
	n := int64(nanos)
	out = append(out, '"')
	if secs < 0 || n < 0 {
		out = append(out, '-')
		secs, n = -secs, -n
	}
	out = strconv.AppendInt(out, secs, 10)
	frac := strconv.AppendInt(make([]byte, 0, 10), 1e9+n, 10)[1:] // nine digits
	switch {
	case n == 0:
	case n%1e6 == 0:
		out = append(append(out, '.'), frac[:3]...)
	case n%1e3 == 0:
		out = append(append(out, '.'), frac[:6]...)
	default:
		out = append(append(out, '.'), frac...)
	}
	return append(out, 's', '"')
}

// appendWireScalar appends the value of fd at the start of b (after its
// tag), a singular field or a list element, and reports whether it did:
// a field without presence (implicit) holding its zero value is left out.
func appendWireScalar(out []byte, fd protoreflect.FieldDescriptor, b []byte, implicit bool, o wireJSONOpts) ([]byte, bool, bool) {
	switch wireTypeOf(fd.Kind()) {
	case protowire.VarintType:
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return out, false, false
		}
		if !wireEnumKnown(fd, v) {
			return out, false, false
		}
		if implicit && wireVarintZero(fd.Kind(), v) {
			return out, false, true
		}
		return appendVarintJSON(out, fd, v, o), true, true
	case protowire.Fixed32Type, protowire.Fixed64Type:
		v, n := consumeFixed(wireTypeOf(fd.Kind()), b)
		if n < 0 {
			return out, false, false
		}
		if implicit && v == 0 {
			return out, false, true
		}
		return appendFixedJSON(out, fd.Kind(), v), true, true
	case protowire.BytesType:
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return out, false, false
		}
		switch fd.Kind() {
		case protoreflect.StringKind:
			if implicit && len(v) == 0 {
				return out, false, true
			}
			out, ok := appendJSONString(out, string(v))
			return out, true, ok
		case protoreflect.BytesKind:
			if implicit && len(v) == 0 {
				return out, false, true
			}
			return appendBase64(out, v), true, true
		default:
			out, ok := appendWireJSON(out, fd.Message(), v, o)
			return out, true, ok
		}
	}
	return out, false, false
}

// wireEnumKnown reports false for a value of a closed (proto2) enum that
// the enum does not declare, which decoding keeps as an unknown field
// rather than in the field: it is not followed here.
func wireEnumKnown(fd protoreflect.FieldDescriptor, v uint64) bool {
	if fd.Kind() != protoreflect.EnumKind || !fd.Enum().IsClosed() {
		return true
	}
	return fd.Enum().Values().ByNumber(protoreflect.EnumNumber(int32(v))) != nil
}

// wireVarintZero reports whether a varint v of kind decodes to the zero
// value (int32, uint32, enum and sint32 values keep their low 32 bits).
func wireVarintZero(kind protoreflect.Kind, v uint64) bool {
	switch kind {
	case protoreflect.Int32Kind, protoreflect.Uint32Kind, protoreflect.EnumKind, protoreflect.Sint32Kind:
		return uint32(v) == 0
	}
	return v == 0
}

func appendVarintJSON(out []byte, fd protoreflect.FieldDescriptor, v uint64, o wireJSONOpts) []byte {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if v != 0 {
			return append(out, "true"...)
		}
		return append(out, "false"...)
	case protoreflect.Int32Kind:
		return strconv.AppendInt(out, int64(int32(v)), 10)
	case protoreflect.Sint32Kind:
		return strconv.AppendInt(out, int64(int32(protowire.DecodeZigZag(v&math.MaxUint32))), 10)
	case protoreflect.Uint32Kind:
		return strconv.AppendUint(out, uint64(uint32(v)), 10)
	case protoreflect.Int64Kind:
		return append(strconv.AppendInt(append(out, '"'), int64(v), 10), '"')
	case protoreflect.Sint64Kind:
		return append(strconv.AppendInt(append(out, '"'), protowire.DecodeZigZag(v), 10), '"')
	case protoreflect.Uint64Kind:
		return append(strconv.AppendUint(append(out, '"'), v, 10), '"')
	default: // enum
		return appendEnumJSON(out, fd.Enum(), protoreflect.EnumNumber(int32(v)), o)
	}
}

func appendEnumJSON(out []byte, ed protoreflect.EnumDescriptor, n protoreflect.EnumNumber, o wireJSONOpts) []byte {
	if ed.FullName() == "google.protobuf.NullValue" {
		return append(out, "null"...)
	}
	if vd := ed.Values().ByNumber(n); vd != nil && !o.enumNumbers {
		out = append(out, '"')
		out = append(out, vd.Name()...) // an identifier: nothing to escape
		return append(out, '"')
	}
	return strconv.AppendInt(out, int64(n), 10)
}

// consumeFixed reads a fixed32 or fixed64 value, by typ, into a uint64.
func consumeFixed(typ protowire.Type, b []byte) (uint64, int) {
	if typ == protowire.Fixed32Type {
		v, n := protowire.ConsumeFixed32(b)
		return uint64(v), n
	}
	return protowire.ConsumeFixed64(b)
}

// appendFixedJSON appends a value of a fixed-width kind, v as
// consumeFixed reads it.
func appendFixedJSON(out []byte, kind protoreflect.Kind, v uint64) []byte {
	switch kind {
	case protoreflect.Sfixed32Kind:
		return strconv.AppendInt(out, int64(int32(v)), 10)
	case protoreflect.Fixed32Kind:
		return strconv.AppendUint(out, v, 10)
	case protoreflect.FloatKind:
		return appendJSONFloat(out, float64(math.Float32frombits(uint32(v))), 32)
	case protoreflect.Sfixed64Kind:
		return append(strconv.AppendInt(append(out, '"'), int64(v), 10), '"')
	case protoreflect.Fixed64Kind:
		return append(strconv.AppendUint(append(out, '"'), v, 10), '"')
	default: // double
		return appendJSONFloat(out, math.Float64frombits(v), 64)
	}
}

// appendJSONFloat writes a float as protojson does: NaN and the
// infinities as strings, otherwise as encoding/json writes numbers.
func appendJSONFloat(out []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(out, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(out, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(out, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	out = strconv.AppendFloat(out, f, format, -1, bits)
	if format == 'e' {
		// e-07 becomes e-7, as encoding/json writes it.
		if n := len(out); n >= 4 && out[n-4] == 'e' && out[n-3] == '-' && out[n-2] == '0' {
			out[n-2] = out[n-1]
			out = out[:n-1]
		}
	}
	return out
}

func appendBase64(out []byte, v []byte) []byte {
	out = append(out, '"')
	out = base64.StdEncoding.AppendEncode(out, v)
	return append(out, '"')
}

// appendJSONString appends s quoted as protojson quotes it: ", \ and
// control characters escaped, nothing else; false if s is not UTF-8.
func appendJSONString(out []byte, s string) ([]byte, bool) {
	out = append(out, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return out, false
			}
			out = append(out, s[i:i+n]...)
			i += n
			continue
		}
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c >= ' ':
			out = append(out, c)
		case c == '\b':
			out = append(out, '\\', 'b')
		case c == '\f':
			out = append(out, '\\', 'f')
		case c == '\n':
			out = append(out, '\\', 'n')
		case c == '\r':
			out = append(out, '\\', 'r')
		case c == '\t':
			out = append(out, '\\', 't')
		default:
			const hex = "0123456789abcdef"
			out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
	}
	return append(out, '"'), true
}

// appendZeroJSON appends the zero value of fd, a scalar or a message
// (a map entry's missing value, a wrapper's missing field).
func appendZeroJSON(out []byte, fd protoreflect.FieldDescriptor, o wireJSONOpts) ([]byte, bool) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return appendWireJSON(out, fd.Message(), nil, o)
	case protoreflect.StringKind, protoreflect.BytesKind:
		return append(out, `""`...), true
	case protoreflect.EnumKind:
		return appendEnumJSON(out, fd.Enum(), 0, o), true
	}
	if wireTypeOf(fd.Kind()) == protowire.VarintType {
		return appendVarintJSON(out, fd, 0, o), true
	}
	return appendFixedJSON(out, fd.Kind(), 0), true
}

// appendWireList appends the elements of the repeated field fd, whose
// first occurrence begins b, in order: packed runs and single elements
// alike. An empty list is left out.
func appendWireList(out []byte, fd protoreflect.FieldDescriptor, b []byte, o wireJSONOpts) ([]byte, bool, bool) {
	mark := len(out)
	out = append(out, '[')
	count := 0
	elem := wireTypeOf(fd.Kind())
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return out, false, false
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return out, false, false
		}
		if num == fd.Number() && wireTypeFits(fd, typ) {
			// One element, or a packed run of them.
			run, packed := b[:m], typ == protowire.BytesType && elem != protowire.BytesType
			if packed {
				run, _ = protowire.ConsumeBytes(b)
			}
			for len(run) > 0 {
				k := len(run)
				if packed {
					if k = protowire.ConsumeFieldValue(fd.Number(), elem, run); k < 0 {
						return out, false, false
					}
				}
				if count > 0 {
					out = append(out, ',')
				}
				count++
				var ok bool
				if out, _, ok = appendWireScalar(out, fd, run[:k], false, o); !ok {
					return out, false, false
				}
				run = run[k:]
			}
		}
		b = b[m:]
	}
	if count == 0 {
		return out[:mark], false, true
	}
	return append(out, ']'), true, true
}

// A wireEntry is one entry of a map on the wire: its key and its value.
type wireEntry struct {
	str   string // a string key; the others are in num
	num   uint64 // a bool or integer key, as decoding reads it (signed ones as int64 bits)
	value []byte // the value's bytes after its tag; nil: none, the zero value
}

// appendWireMap appends the entries of the map field fd, whose first
// entry begins b, sorted by key as protojson sorts them, the last entry of
// a key kept.
func appendWireMap(out []byte, fd protoreflect.FieldDescriptor, b []byte, o wireJSONOpts) ([]byte, bool, bool) {
	keyFd, valFd := fd.MapKey(), fd.MapValue()
	var stack [8]wireEntry
	entries := stack[:0]
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return out, false, false
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return out, false, false
		}
		if num == fd.Number() && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b)
			e, ok := wireMapEntryOf(keyFd, valFd, v)
			if !ok {
				return out, false, false
			}
			entries = append(entries, e)
		}
		b = b[m:]
	}
	less := wireKeyCompare(keyFd.Kind())
	// Stable, so that of the entries of one key the last stays last.
	slices.SortStableFunc(entries, less)
	out = append(out, '{')
	count := 0
	for i, e := range entries {
		if i+1 < len(entries) && less(e, entries[i+1]) == 0 {
			continue // a later entry has the same key
		}
		if count > 0 {
			out = append(out, ',')
		}
		count++
		var ok bool
		if out, ok = appendWireKey(out, keyFd, e); !ok {
			return out, false, false
		}
		out = append(out, ':')
		if e.value == nil {
			out, ok = appendZeroJSON(out, valFd, o)
		} else {
			out, _, ok = appendWireScalar(out, valFd, e.value, false, o)
		}
		if !ok {
			return out, false, false
		}
	}
	return append(out, '}'), true, true
}

// wireMapEntryOf reads a map entry: the last key and the last value.
func wireMapEntryOf(keyFd, valFd protoreflect.FieldDescriptor, v []byte) (wireEntry, bool) {
	var e wireEntry
	for len(v) > 0 {
		num, typ, n := protowire.ConsumeTag(v)
		if n < 0 {
			return e, false
		}
		v = v[n:]
		m := protowire.ConsumeFieldValue(num, typ, v)
		if m < 0 {
			return e, false
		}
		switch {
		case num == 1 && typ == wireTypeOf(keyFd.Kind()):
			switch typ {
			case protowire.BytesType:
				s, _ := protowire.ConsumeBytes(v)
				e.str = string(s)
			case protowire.VarintType:
				e.num, _ = protowire.ConsumeVarint(v)
				e.num = wireKeyNumber(keyFd.Kind(), e.num)
			case protowire.Fixed32Type:
				k, _ := protowire.ConsumeFixed32(v)
				e.num = uint64(k)
				if keyFd.Kind() == protoreflect.Sfixed32Kind {
					e.num = uint64(int64(int32(k)))
				}
			default:
				e.num, _ = protowire.ConsumeFixed64(v)
			}
		case num == 2 && typ == wireTypeOf(valFd.Kind()):
			e.value = v[:m:m]
		}
		v = v[m:]
	}
	return e, true
}

// wireKeyNumber turns the wire value of an integer or bool key into the
// value decoding gives it, held in a uint64 (signed ones as int64 bits).
func wireKeyNumber(kind protoreflect.Kind, v uint64) uint64 {
	switch kind {
	case protoreflect.BoolKind:
		if v != 0 {
			return 1
		}
		return 0
	case protoreflect.Int32Kind:
		return uint64(int64(int32(v)))
	case protoreflect.Sint32Kind:
		return uint64(int64(int32(protowire.DecodeZigZag(v & math.MaxUint32))))
	case protoreflect.Uint32Kind:
		return uint64(uint32(v))
	case protoreflect.Sint64Kind:
		return uint64(protowire.DecodeZigZag(v))
	}
	return v // int64, uint64
}

// wireKeyCompare orders keys of kind as protojson does: false before
// true, numbers by value, strings by bytes.
func wireKeyCompare(kind protoreflect.Kind) func(a, b wireEntry) int {
	switch kind {
	case protoreflect.StringKind:
		return func(a, b wireEntry) int { return strings.Compare(a.str, b.str) }
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return func(a, b wireEntry) int {
			x, y := int64(a.num), int64(b.num)
			switch {
			case x < y:
				return -1
			case x > y:
				return 1
			}
			return 0
		}
	}
	return func(a, b wireEntry) int {
		switch {
		case a.num < b.num:
			return -1
		case a.num > b.num:
			return 1
		}
		return 0
	}
}

// appendWireKey appends a map key as a JSON name.
func appendWireKey(out []byte, keyFd protoreflect.FieldDescriptor, e wireEntry) ([]byte, bool) {
	switch keyFd.Kind() {
	case protoreflect.StringKind:
		return appendJSONString(out, e.str)
	case protoreflect.BoolKind:
		if e.num != 0 {
			return append(out, `"true"`...), true
		}
		return append(out, `"false"`...), true
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return append(strconv.AppendInt(append(out, '"'), int64(e.num), 10), '"'), true
	}
	return append(strconv.AppendUint(append(out, '"'), e.num, 10), '"'), true
}

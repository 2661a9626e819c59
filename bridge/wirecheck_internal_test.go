package bridge

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
)

// wireFile is a proto3 file with a field of every kind the walk takes,
// alone, repeated and in maps, Timestamps, Durations, wrappers and Empty
// among them, a oneof and a recursive message; and a proto2 message with a
// group.
func wireFile(t testing.TB) (protoreflect.FileDescriptor, *dynamicpb.Types) {
	t.Helper()
	type T = descriptorpb.FieldDescriptorProto_Type
	var n int32
	field := func(name string, typ T, label descriptorpb.FieldDescriptorProto_Label, typeName string) *descriptorpb.FieldDescriptorProto {
		n++
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(n), Type: typ.Enum(), Label: label.Enum(), JsonName: proto.String(name)}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	const (
		opt = descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		rep = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
	)
	var fields []*descriptorpb.FieldDescriptorProto
	for typ := descriptorpb.FieldDescriptorProto_TYPE_DOUBLE; typ <= descriptorpb.FieldDescriptorProto_TYPE_SINT64; typ++ {
		typeName := ""
		switch typ {
		case descriptorpb.FieldDescriptorProto_TYPE_GROUP:
			continue
		case descriptorpb.FieldDescriptorProto_TYPE_MESSAGE:
			typeName = ".wire.v1.All"
		case descriptorpb.FieldDescriptorProto_TYPE_ENUM:
			typeName = ".wire.v1.Color"
		}
		name := typ.String()[5:]
		fields = append(fields, field("one_"+name, typ, opt, typeName), field("many_"+name, typ, rep, typeName))
	}
	msg := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	fields = append(fields,
		field("at", msg, opt, ".google.protobuf.Timestamp"),
		field("took", msg, opt, ".google.protobuf.Duration"),
		field("ats", msg, rep, ".google.protobuf.Timestamp"),
		field("by_name", msg, rep, ".wire.v1.All.ByNameEntry"),
		field("by_id", msg, rep, ".wire.v1.All.ByIdEntry"),
		field("tooks", msg, rep, ".wire.v1.All.TooksEntry"),
		field("by_num", msg, rep, ".wire.v1.All.ByNumEntry"),
		field("by_flag", msg, rep, ".wire.v1.All.ByFlagEntry"),
		field("by_small", msg, rep, ".wire.v1.All.BySmallEntry"),
		field("by_big", msg, rep, ".wire.v1.All.ByBigEntry"),
		field("by_int", msg, rep, ".wire.v1.All.ByIntEntry"),
		field("nothing", msg, opt, ".google.protobuf.Empty"),
	)
	for _, w := range []string{"BoolValue", "Int32Value", "Int64Value", "UInt32Value", "UInt64Value", "FloatValue", "DoubleValue", "StringValue", "BytesValue"} {
		fields = append(fields, field("wrapped_"+w, msg, opt, ".google.protobuf."+w))
	}
	choice := []*descriptorpb.FieldDescriptorProto{
		field("pick_text", descriptorpb.FieldDescriptorProto_TYPE_STRING, opt, ""),
		field("pick_all", msg, opt, ".wire.v1.All"),
		field("pick_at", msg, opt, ".google.protobuf.Timestamp"),
	}
	for _, f := range choice {
		f.OneofIndex = proto.Int32(0)
	}
	fields = append(fields, choice...)
	entry := func(name string, key T, value T, typeName string) *descriptorpb.DescriptorProto {
		k := &descriptorpb.FieldDescriptorProto{Name: proto.String("key"), Number: proto.Int32(1), Type: key.Enum(), Label: opt.Enum(), JsonName: proto.String("key")}
		v := &descriptorpb.FieldDescriptorProto{Name: proto.String("value"), Number: proto.Int32(2), Type: value.Enum(), Label: opt.Enum(), JsonName: proto.String("value")}
		if typeName != "" {
			v.TypeName = proto.String(typeName)
		}
		return &descriptorpb.DescriptorProto{Name: proto.String(name), Field: []*descriptorpb.FieldDescriptorProto{k, v},
			Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)}}
	}
	all := &descriptorpb.DescriptorProto{
		Name: proto.String("All"), Field: fields,
		OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("pick")}},
		NestedType: []*descriptorpb.DescriptorProto{
			entry("ByNameEntry", descriptorpb.FieldDescriptorProto_TYPE_STRING, descriptorpb.FieldDescriptorProto_TYPE_INT32, ""),
			entry("ByIdEntry", descriptorpb.FieldDescriptorProto_TYPE_INT64, msg, ".wire.v1.All"),
			entry("TooksEntry", descriptorpb.FieldDescriptorProto_TYPE_STRING, msg, ".google.protobuf.Duration"),
			entry("ByNumEntry", descriptorpb.FieldDescriptorProto_TYPE_SINT32, descriptorpb.FieldDescriptorProto_TYPE_ENUM, ".wire.v1.Color"),
			entry("ByFlagEntry", descriptorpb.FieldDescriptorProto_TYPE_BOOL, descriptorpb.FieldDescriptorProto_TYPE_STRING, ""),
			entry("BySmallEntry", descriptorpb.FieldDescriptorProto_TYPE_SFIXED32, descriptorpb.FieldDescriptorProto_TYPE_FLOAT, ""),
			entry("ByBigEntry", descriptorpb.FieldDescriptorProto_TYPE_UINT64, descriptorpb.FieldDescriptorProto_TYPE_BYTES, ""),
			entry("ByIntEntry", descriptorpb.FieldDescriptorProto_TYPE_INT32, msg, ".google.protobuf.Timestamp"),
		},
	}
	color := &descriptorpb.EnumDescriptorProto{Name: proto.String("Color"), Value: []*descriptorpb.EnumValueDescriptorProto{
		{Name: proto.String("COLOR_UNSPECIFIED"), Number: proto.Int32(0)}, {Name: proto.String("COLOR_RED"), Number: proto.Int32(1)}}}
	fd3 := &descriptorpb.FileDescriptorProto{
		Name: proto.String("wire/v1/wire.proto"), Package: proto.String("wire.v1"), Syntax: proto.String("proto3"),
		Dependency:  []string{"google/protobuf/timestamp.proto", "google/protobuf/duration.proto", "google/protobuf/wrappers.proto", "google/protobuf/empty.proto"},
		MessageType: []*descriptorpb.DescriptorProto{all}, EnumType: []*descriptorpb.EnumDescriptorProto{color},
	}
	n = 0
	grouped := &descriptorpb.DescriptorProto{Name: proto.String("Grouped"), Field: []*descriptorpb.FieldDescriptorProto{
		field("count", descriptorpb.FieldDescriptorProto_TYPE_INT64, opt, ""),
		field("item", descriptorpb.FieldDescriptorProto_TYPE_GROUP, rep, ".wire.v1.Grouped.Item"),
		field("data", descriptorpb.FieldDescriptorProto_TYPE_BYTES, opt, ""),
	}, NestedType: []*descriptorpb.DescriptorProto{{Name: proto.String("Item"), Field: []*descriptorpb.FieldDescriptorProto{
		{Name: proto.String("n"), Number: proto.Int32(4), Type: descriptorpb.FieldDescriptorProto_TYPE_SINT32.Enum(), Label: opt.Enum()},
		{Name: proto.String("at"), Number: proto.Int32(5), Type: msg.Enum(), Label: opt.Enum(), TypeName: proto.String(".google.protobuf.Timestamp")},
	}}}}
	fd2 := &descriptorpb.FileDescriptorProto{
		Name: proto.String("wire/v1/grouped.proto"), Package: proto.String("wire.v1"), Syntax: proto.String("proto2"),
		Dependency:  []string{"google/protobuf/timestamp.proto"},
		MessageType: []*descriptorpb.DescriptorProto{grouped},
	}
	var files protoregistry.Files
	var f3 protoreflect.FileDescriptor
	for _, fdp := range []*descriptorpb.FileDescriptorProto{fd3, fd2} {
		fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
		if err != nil {
			t.Fatal(err)
		}
		if err := files.RegisterFile(fd); err != nil {
			t.Fatal(err)
		}
		if f3 == nil {
			f3 = fd
		}
	}
	for _, dep := range []protoreflect.FileDescriptor{timestamppb.File_google_protobuf_timestamp_proto, durationpb.File_google_protobuf_duration_proto,
		wrapperspb.File_google_protobuf_wrappers_proto, emptypb.File_google_protobuf_empty_proto} {
		if err := files.RegisterFile(dep); err != nil {
			t.Fatal(err)
		}
	}
	return f3, dynamicpb.NewTypes(&files)
}

// wireGen writes random bytes shaped like messages of a type: fields of
// the type with their own wire type mostly, another at times, unknown
// fields, out-of-range and mismatched Timestamps and Durations, strings
// that are not UTF-8, packed runs, map entries, groups, nesting past the
// limit; and, unless clean, bytes cut or flipped.
type wireGen struct {
	r     *rand.Rand
	clean bool // only what proto.Marshal writes, within every range
	edges bool // values at the edges half the time: zeros, signs, NaNs, escapes
}

// Values at the edges of what a field holds and how it is written.
var (
	edgeVarints  = []uint64{0, 1, 1 << 32, 1<<32 | 1, math.MaxUint64, math.MaxInt32, 1 << 31, math.MaxUint32, 2}
	edgeFixed32s = []uint32{0, 1 << 31, 0x7fc00000, 0x7f800000, 0xff800000, 1, 0x358637bd, 0x7f7fffff, math.MaxUint32}
	edgeFixed64s = []uint64{0, 1 << 63, 0x7ff8000000000001, 0x7ff0000000000000, 0xfff0000000000000, 1,
		math.Float64bits(1e21), math.Float64bits(1e-7), math.Float64bits(123.5), math.MaxUint64}
	edgeStrings = []string{"", "a\"b\\c", "\b\f\n\r\t\x01\x1f\x7f", "<>&\u2028\u2029/", "text ✓", "\ufffd"}
	edgeBytes   = [][]byte{nil, {0, 1, 0xff}, []byte("abcd"), {0xfb, 0xff}}
)

func (g *wireGen) message(md protoreflect.MessageDescriptor, depth int) []byte {
	var b []byte
	fields := md.Fields()
	leaf := wellKnownLeaf(md)
	count := g.r.IntN(6)
	if depth > maxPayloadDepth+3 {
		count = 0
	}
	for range count {
		if fields.Len() == 0 && g.clean {
			break // Empty
		}
		if fields.Len() == 0 || !g.clean && g.r.IntN(12) == 0 {
			num := protowire.Number(100 + g.r.IntN(50))
			b = g.value(b, nil, num, protowire.Type(g.r.IntN(6)), depth)
			continue
		}
		fd := fields.Get(g.r.IntN(fields.Len()))
		typ := wireTypeOf(fd.Kind())
		if fd.IsList() && typ != protowire.BytesType && typ != protowire.StartGroupType && g.r.IntN(2) == 0 {
			typ = protowire.BytesType // packed
		}
		if !g.clean && g.r.IntN(15) == 0 {
			typ = protowire.Type(g.r.IntN(6))
		}
		if leaf != leafNone && typ == protowire.VarintType {
			b = protowire.AppendTag(b, fd.Number(), typ)
			b = protowire.AppendVarint(b, g.leafValue(leaf, fd.Number()))
			continue
		}
		b = g.value(b, fd, fd.Number(), typ, depth)
	}
	return g.mangle(b)
}

func (g *wireGen) leafValue(leaf leafKind, num protowire.Number) uint64 {
	if g.clean || g.r.IntN(4) > 0 {
		if num == 2 && g.edges && g.r.IntN(2) == 0 {
			n := []int64{0, 5e8, 123e6, 123456e3, 1, 999999999}[g.r.IntN(6)]
			if leaf == leafDuration && g.r.IntN(2) == 0 {
				n = -n
			}
			return uint64(n)
		}
		if num == 2 {
			if leaf == leafDuration && g.r.IntN(2) == 0 {
				return uint64(int64(-g.r.IntN(maxNanos)))
			}
			return uint64(g.r.IntN(maxNanos))
		}
		return uint64(g.r.Int64N(maxTimestampSeconds))
	}
	tooLow := int64(minTimestampSeconds - 1)
	return []uint64{math.MaxUint64, uint64(1 << 31), uint64(maxDurationSeconds + 1), uint64(tooLow), 1 << 63, maxNanos + 1}[g.r.IntN(6)]
}

func (g *wireGen) value(b []byte, fd protoreflect.FieldDescriptor, num protowire.Number, typ protowire.Type, depth int) []byte {
	b = protowire.AppendTag(b, num, typ)
	edge := g.edges && g.r.IntN(2) == 0
	switch typ {
	case protowire.VarintType:
		if edge {
			return protowire.AppendVarint(b, edgeVarints[g.r.IntN(len(edgeVarints))])
		}
		return protowire.AppendVarint(b, g.r.Uint64()>>g.r.IntN(64))
	case protowire.Fixed32Type:
		if edge {
			return protowire.AppendFixed32(b, edgeFixed32s[g.r.IntN(len(edgeFixed32s))])
		}
		return protowire.AppendFixed32(b, g.r.Uint32())
	case protowire.Fixed64Type:
		if edge {
			return protowire.AppendFixed64(b, edgeFixed64s[g.r.IntN(len(edgeFixed64s))])
		}
		return protowire.AppendFixed64(b, g.r.Uint64())
	case protowire.StartGroupType:
		var inner []byte
		if fd != nil && fd.Kind() == protoreflect.GroupKind {
			inner = g.message(fd.Message(), depth+1)
		}
		b = append(b, inner...)
		end := num
		if !g.clean && g.r.IntN(20) == 0 {
			end++
		}
		return protowire.AppendTag(b, end, protowire.EndGroupType)
	case protowire.EndGroupType:
		return b
	}
	// Bytes: by what the field holds.
	var v []byte
	switch {
	case fd == nil:
		v = []byte("unknown")
	case fd.IsMap():
		entry := fd.Message()
		v = protowire.AppendBytes(nil, nil)[:0]
		for _, f := range []protoreflect.FieldDescriptor{entry.Fields().ByNumber(1), entry.Fields().ByNumber(2)} {
			if g.r.IntN(5) > 0 {
				ft := wireTypeOf(f.Kind())
				if f.Message() != nil {
					v = protowire.AppendTag(v, f.Number(), ft)
					v = protowire.AppendBytes(v, g.message(f.Message(), depth+2))
					continue
				}
				v = g.scalar(v, f, ft)
			}
		}
		v = g.mangle(v)
	case fd.Message() != nil:
		v = g.message(fd.Message(), depth+1)
	case fd.IsList() && wireTypeOf(fd.Kind()) != protowire.BytesType:
		for range g.r.IntN(4) {
			v = g.scalar(v, fd, wireTypeOf(fd.Kind()))
		}
		v = g.stripTags(v, fd)
	case fd.Kind() == protoreflect.StringKind && edge:
		v = []byte(edgeStrings[g.r.IntN(len(edgeStrings))])
	case fd.Kind() == protoreflect.BytesKind && edge:
		v = edgeBytes[g.r.IntN(len(edgeBytes))]
	case fd.Kind() == protoreflect.StringKind:
		v = []byte("text ✓")
		if !g.clean && g.r.IntN(6) == 0 {
			v = append(v, 0xff)
		}
	default:
		v = []byte{0, 1, 0xff}
	}
	return protowire.AppendBytes(b, v)
}

// scalar appends a tagged value of f.
func (g *wireGen) scalar(b []byte, f protoreflect.FieldDescriptor, typ protowire.Type) []byte {
	return g.value(b, f, f.Number(), typ, 0)
}

// stripTags turns tagged values of fd into a packed run: the tags go.
func (g *wireGen) stripTags(v []byte, fd protoreflect.FieldDescriptor) []byte {
	var out []byte
	for len(v) > 0 {
		_, typ, n := protowire.ConsumeTag(v)
		v = v[n:]
		m := protowire.ConsumeFieldValue(fd.Number(), typ, v)
		out = append(out, v[:m]...)
		v = v[m:]
	}
	if !g.clean && len(out) > 0 && g.r.IntN(8) == 0 {
		out = out[:len(out)-1]
	}
	return out
}

func (g *wireGen) mangle(b []byte) []byte {
	if g.clean || len(b) == 0 || g.r.IntN(25) > 0 {
		return b
	}
	if g.r.IntN(2) == 0 {
		return b[:g.r.IntN(len(b))]
	}
	b = append([]byte(nil), b...)
	b[g.r.IntN(len(b))] ^= byte(1 << g.r.IntN(8))
	return b
}

// A wireCase is a type of the random payloads: as pushed at run time,
// and compiled for the types linked into the binary.
type wireCase struct {
	dynamic  protoreflect.MessageType
	compiled protoreflect.MessageType // nil: none
}

// wireCases are the types of wireFile with two of the linked ones, and
// the types that resolve them.
func wireCases(t testing.TB) (*dynamicpb.Types, []wireCase) {
	t.Helper()
	fd, types := wireFile(t)
	grouped, err := types.FindMessageByName("wire.v1.Grouped")
	if err != nil {
		t.Fatal(err)
	}
	return types, []wireCase{
		{dynamicpb.NewMessageType(fd.Messages().ByName("All")), nil},
		{grouped, nil},
		{mustFind(t, "chat.v1.ChatMessage"), (&chatv1.ChatMessage{}).ProtoReflect().Type()},
		{mustFind(t, "orders.v1.OrderPlaced"), (&ordersv1.OrderPlaced{}).ProtoReflect().Type()},
	}
}

// TestWireCheckAcceptsOnlyWhatDecodingAccepts: over random payloads of
// every kind of field, a payload the walk accepts decodes and renders,
// decoded as a type pushed at run time and, for the linked types, as the
// compiled one; the walk accepts most payloads, and every payload as
// proto.Marshal writes it whose values render.
func TestWireCheckAcceptsOnlyWhatDecodingAccepts(t *testing.T) {
	_, cases := wireCases(t)
	r := rand.New(rand.NewPCG(1, 2))
	decode := func(mt protoreflect.MessageType, b []byte) bool {
		m := mt.New().Interface()
		if err := (proto.UnmarshalOptions{RecursionLimit: maxPayloadDepth}).Unmarshal(b, m); err != nil {
			return false
		}
		return planFor(mt.Descriptor()).renders(m.ProtoReflect())
	}
	for _, c := range cases {
		md := c.dynamic.Descriptor()
		if !wireCheckable(md) {
			t.Fatalf("%s is not checked on the wire", md.FullName())
		}
		accepted, decoded := 0, 0
		const rounds = 4000
		for i := range rounds {
			g := &wireGen{r: r}
			b := g.message(md, 1)
			ok := wireCheck(md, b, maxPayloadDepth)
			want := decode(c.dynamic, b)
			if c.compiled != nil && decode(c.compiled, b) != want {
				t.Fatalf("%s, payload %d %x: the compiled type and the dynamic one disagree", md.FullName(), i, b)
			}
			if ok && !want {
				t.Fatalf("%s, payload %d %x: the walk accepts what decoding or rendering refuses", md.FullName(), i, b)
			}
			if ok {
				accepted++
			}
			if want {
				decoded++
			}

			// The same as proto.Marshal writes it.
			g.clean = true
			m := c.dynamic.New().Interface()
			if err := (proto.UnmarshalOptions{RecursionLimit: maxPayloadDepth}).Unmarshal(g.message(md, 1), m); err != nil {
				continue // nested past the limit
			}
			clean, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if decode(c.dynamic, clean) && !wireCheck(md, clean, maxPayloadDepth) {
				t.Fatalf("%s, payload %d %x: the walk refuses what proto.Marshal wrote, which decodes and renders", md.FullName(), i, clean)
			}
		}
		t.Logf("%s: the walk accepted %d of %d random payloads, decoding %d", md.FullName(), accepted, rounds, decoded)
		if accepted < decoded/2 {
			t.Errorf("%s: the walk accepted %d payloads of the %d that decode; it should take most", md.FullName(), accepted, decoded)
		}
	}
}

func mustFind(t testing.TB, name protoreflect.FullName) protoreflect.MessageType {
	t.Helper()
	mt, err := dynamicTypes.FindMessageByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return mt
}

// TestWireCheckTakesOnlyPlainTypes: types whose decoded message has a
// further use, or that the walk does not follow, are decoded.
func TestWireCheckTakesOnlyPlainTypes(t *testing.T) {
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	withRule := &descriptorpb.FieldOptions{}
	// An option the server does not know, as a protovalidate rule
	// (buf.validate.field is extension 1159) arrives in a pushed schema.
	withRule.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 1159, protowire.BytesType), nil))
	file := func(name, syntax string, msg *descriptorpb.DescriptorProto, deps ...string) *descriptorpb.FileDescriptorProto {
		f := &descriptorpb.FileDescriptorProto{Name: proto.String(name + ".proto"), Package: proto.String("plain.v1"), Syntax: proto.String(syntax),
			Dependency: deps, MessageType: []*descriptorpb.DescriptorProto{msg}}
		if syntax == "editions" {
			f.Edition = descriptorpb.Edition_EDITION_2023.Enum()
		}
		return f
	}
	plainField := func(name string) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(1), Type: str, Label: opt}
	}
	ruled := plainField("s")
	ruled.Options = withRule
	message := func(name string, typeName string) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(2), Type: descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(), Label: opt, TypeName: proto.String(typeName)}
	}
	for _, c := range []struct {
		fdp  *descriptorpb.FileDescriptorProto
		want bool
	}{
		{file("plain", "proto3", &descriptorpb.DescriptorProto{Name: proto.String("Plain"), Field: []*descriptorpb.FieldDescriptorProto{plainField("s")}}), true},
		{file("ruled", "proto3", &descriptorpb.DescriptorProto{Name: proto.String("Ruled"), Field: []*descriptorpb.FieldDescriptorProto{ruled}}), false},
		{file("ruledmsg", "proto3", &descriptorpb.DescriptorProto{Name: proto.String("RuledMsg"), Field: []*descriptorpb.FieldDescriptorProto{plainField("s")},
			Options: func() *descriptorpb.MessageOptions {
				o := &descriptorpb.MessageOptions{}
				o.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 1159, protowire.BytesType), nil))
				return o
			}()}), false},
		{file("required", "proto2", &descriptorpb.DescriptorProto{Name: proto.String("Required"), Field: []*descriptorpb.FieldDescriptorProto{
			{Name: proto.String("n"), Number: proto.Int32(1), Type: descriptorpb.FieldDescriptorProto_TYPE_INT32.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_REQUIRED.Enum()}}}), false},
		{file("extended", "proto2", &descriptorpb.DescriptorProto{Name: proto.String("Extended"),
			ExtensionRange: []*descriptorpb.DescriptorProto_ExtensionRange{{Start: proto.Int32(100), End: proto.Int32(200)}}}), false},
		{file("structured", "proto3", &descriptorpb.DescriptorProto{Name: proto.String("Structured"), Field: []*descriptorpb.FieldDescriptorProto{
			message("v", ".google.protobuf.Struct")}}, "google/protobuf/struct.proto"), false},
		{file("stamped", "proto3", &descriptorpb.DescriptorProto{Name: proto.String("Stamped"), Field: []*descriptorpb.FieldDescriptorProto{
			message("at", ".google.protobuf.Timestamp")}}, "google/protobuf/timestamp.proto"), true},
		{file("editioned", "editions", &descriptorpb.DescriptorProto{Name: proto.String("Editioned"), Field: []*descriptorpb.FieldDescriptorProto{
			{Name: proto.String("n"), Number: proto.Int32(1), Type: descriptorpb.FieldDescriptorProto_TYPE_INT32.Enum(), Label: opt}}}), false},
	} {
		fd, err := protodesc.NewFile(c.fdp, protoregistry.GlobalFiles)
		if err != nil {
			t.Fatalf("%s: %v", c.fdp.GetName(), err)
		}
		md := fd.Messages().Get(0)
		if got := wireCheckable(md); got != c.want {
			t.Errorf("wireCheckable(%s) = %v; want %v", md.FullName(), got, c.want)
		}
	}
	_ = structpb.NullValue_NULL_VALUE // links struct.proto into GlobalFiles
}

// BenchmarkWireCheck is the publish path's check of the bench's payload,
// a chat.v1.ChatMessage of a type pushed at run time: on the wire, and
// decoded from checkPayload's pool as before.
func BenchmarkWireCheck(b *testing.B) {
	msg := &chatv1.ChatMessage{Room: "bench.t00000", MessageId: "0000000017.1767225600123456789", Author: "herald-bench", Text: "x", SentAt: timestamppb.Now()}
	payload, err := proto.Marshal(msg)
	if err != nil {
		b.Fatal(err)
	}
	mt, err := dynamicTypes.FindMessageByName("chat.v1.ChatMessage")
	if err != nil {
		b.Fatal(err)
	}
	md := mt.Descriptor()
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !wireCheckable(md) || !wireCheck(md, payload, maxPayloadDepth) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("decoded", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m, sc, err := checkURL(b, dynamicTypes, "type.googleapis.com/chat.v1.ChatMessage", payload)
			if err != nil || !planFor(md).renders(m.ProtoReflect()) {
				b.Fatal(err)
			}
			sc.put(m)
		}
	})
}

// TestWireCheckEdges: payloads random ones seldom are. Nesting through
// messages and map entries up to the limit and one past it; and a
// Duration whose halves come from two occurrences that decoding merges,
// each fine alone and not together, in a message and in a map entry.
func TestWireCheckEdges(t *testing.T) {
	fd, _ := wireFile(t)
	all := fd.Messages().ByName("All")
	mt := dynamicpb.NewMessageType(all)
	num := func(name protoreflect.Name) protowire.Number { return all.Fields().ByName(name).Number() }
	field := func(b []byte, n protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, n, protowire.BytesType), v)
	}
	duration := func(s int64, n int32) []byte {
		b := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), uint64(s))
		if n != 0 {
			b = protowire.AppendVarint(protowire.AppendTag(b, 2, protowire.VarintType), uint64(int64(n)))
		}
		return b
	}
	// nest wraps inner in levels of All, through one_MESSAGE or, with
	// byMap, through a by_id entry (two levels each, as decoding counts).
	nest := func(levels int, byMap bool) []byte {
		var b []byte
		for range levels {
			if byMap {
				entry := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 7)
				b = field(nil, num("by_id"), field(entry, 2, b))
			} else {
				b = field(nil, num("one_MESSAGE"), b)
			}
		}
		return b
	}
	cases := map[string][]byte{}
	for levels := maxPayloadDepth - 3; levels <= maxPayloadDepth; levels++ {
		cases[fmt.Sprintf("%d messages deep", levels)] = nest(levels, false)
	}
	for levels := maxPayloadDepth/2 - 2; levels <= maxPayloadDepth/2+1; levels++ {
		cases[fmt.Sprintf("%d map entries deep", levels)] = nest(levels, true)
	}
	cases["a Duration in two halves"] = field(field(nil, num("took"), duration(5, 3)), num("took"), duration(-5, 0))
	cases["a Duration in two parts that agree"] = field(field(nil, num("took"), duration(5, 3)), num("took"), duration(6, 0))
	entry := field(field(nil, 1, []byte("k")), 2, duration(5, 3))
	cases["a map entry's Duration in two halves"] = field(nil, num("tooks"), field(entry, 2, duration(-5, 0)))
	inner := field(nil, num("took"), duration(5, 3))
	byID := field(field(nil, 2, inner), 2, field(nil, num("took"), duration(-5, 0)))
	cases["a map entry's message in two halves"] = field(nil, num("by_id"), byID)

	decodes := 0
	for name, b := range cases {
		m := mt.New().Interface()
		err := (proto.UnmarshalOptions{RecursionLimit: maxPayloadDepth}).Unmarshal(b, m)
		want := err == nil && planFor(all).renders(m.ProtoReflect())
		got := wireCheck(all, b, maxPayloadDepth)
		if got && !want {
			t.Errorf("%s: the walk accepts what decoding or rendering refuses", name)
		}
		if want {
			decodes++
		}
		if want && !got && !strings.Contains(name, "two") {
			t.Errorf("%s: the walk refuses what decodes and renders", name)
		}
	}
	if decodes == len(cases) || decodes == 0 {
		t.Errorf("%d of %d cases decode; the cases test nothing", decodes, len(cases))
	}
}

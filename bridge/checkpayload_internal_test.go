package bridge

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
)

// dynamicTypes resolves every linked schema as a type pushed at run time:
// dynamicpb messages.
var dynamicTypes = dynamicpb.NewTypes(protoregistry.GlobalFiles)

// TestCheckPayloadReusesClearedMessages: a message checkPayload hands out
// again after sc.put holds what its payload holds and nothing of the
// payloads before it (fields, list items, map entries, nested messages,
// unknown fields), and a payload that does not parse is refused as
// decodePayload refuses it.
func TestCheckPayloadReusesClearedMessages(t *testing.T) {
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withUnknown := func(b []byte) []byte {
		b = protowire.AppendTag(b, 999, protowire.VarintType)
		return protowire.AppendVarint(b, 7)
	}
	any := func(m proto.Message) *anypb.Any {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	type payload struct {
		typeURL string
		b       []byte
	}
	url := func(m proto.Message) string {
		return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
	}
	full := &ordersv1.OrderPlaced{OrderId: "o-1", Customer: "Ada", TotalCents: 900, Currency: "EUR", PlacedAt: timestamppb.Now(),
		Channel: ordersv1.Channel(1), Items: []*ordersv1.LineItem{{Sku: "a", Quantity: 2}, {Sku: "b", Name: "B", UnitPriceCents: 5}}}
	request := &heraldv1.PublishRequest{Topic: "t", Attributes: map[string]string{"a": "1", "b": "2"}, Payload: any(full)}
	var payloads []payload
	for _, m := range []proto.Message{
		full,
		&ordersv1.OrderPlaced{OrderId: "o-2"},
		&ordersv1.OrderPlaced{Items: []*ordersv1.LineItem{{Sku: "c"}}},
		&ordersv1.OrderPlaced{},
		request,
		&heraldv1.PublishRequest{Topic: "u", Attributes: map[string]string{"c": "3"}},
		&heraldv1.PublishRequest{},
		&chatv1.ChatMessage{Room: "r", Text: "hello", SentAt: timestamppb.Now()},
		&chatv1.ChatMessage{Author: "me"},
	} {
		payloads = append(payloads, payload{url(m), marshal(m)}, payload{url(m), withUnknown(marshal(m))})
	}
	// Refused: a string that is not UTF-8, and bytes that end inside a field.
	bad := protowire.AppendTag(nil, 1, protowire.BytesType)
	bad = protowire.AppendString(bad, "\xff")
	payloads = append(payloads, payload{url(full), bad}, payload{url(full), marshal(full)[:5]})

	for round := range 3 {
		for i, p := range payloads {
			want, wantErr := decodePayload(dynamicTypes, p.typeURL, p.b)
			got, sc, err := checkURL(t, dynamicTypes, p.typeURL, p.b)
			if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
				t.Fatalf("round %d, payload %d: checkPayload error %v; decodePayload's %v", round, i, err, wantErr)
			}
			if err != nil {
				continue
			}
			if _, ok := got.(*dynamicpb.Message); !ok {
				t.Fatalf("payload %d: checkPayload gave a %T; want a dynamicpb message", i, got)
			}
			if !proto.Equal(want, got) {
				t.Errorf("round %d, payload %d: checkPayload's message %v differs from a fresh one, %v", round, i, got, want)
			}
			if string(got.ProtoReflect().GetUnknown()) != string(want.ProtoReflect().GetUnknown()) {
				t.Errorf("round %d, payload %d: unknown fields %x; want %x", round, i, got.ProtoReflect().GetUnknown(), want.ProtoReflect().GetUnknown())
			}
			sc.put(got)
		}
	}
}

// BenchmarkCheckPayload is the publish path's decoding of a payload of a
// type pushed at run time (dynamicpb), fresh and from checkPayload's pool.
func BenchmarkCheckPayload(b *testing.B) {
	msg := &chatv1.ChatMessage{Room: "bench.t00000", MessageId: "0000000017.1767225600123456789", Author: "herald-bench", Text: strings.Repeat("x", 150)}
	payload, err := proto.Marshal(msg)
	if err != nil {
		b.Fatal(err)
	}
	typeURL := "type.googleapis.com/chat.v1.ChatMessage"
	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodePayload(dynamicTypes, typeURL, payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pooled", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			msg, sc, err := checkURL(b, dynamicTypes, typeURL, payload)
			if err != nil {
				b.Fatal(err)
			}
			sc.put(msg)
		}
	})
}

// TestCheckPayloadRequiredFields: checkPayload skips the check of required
// fields only for types in which none can occur, so a payload that lacks
// one, in the message or in one it nests, is refused as decodePayload
// refuses it.
func TestCheckPayloadRequiredFields(t *testing.T) {
	str := func(s string) *string { return &s }
	num := func(n int32) *int32 { return &n }
	field := func(name string, n int32, label descriptorpb.FieldDescriptorProto_Label, typ descriptorpb.FieldDescriptorProto_Type, msg string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: str(name), Number: num(n), Label: label.Enum(), Type: typ.Enum()}
		if msg != "" {
			f.TypeName = str(msg)
		}
		return f
	}
	const (
		optional = descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		required = descriptorpb.FieldDescriptorProto_LABEL_REQUIRED
		repeated = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
		tString  = descriptorpb.FieldDescriptorProto_TYPE_STRING
		tMessage = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	)
	fdp := &descriptorpb.FileDescriptorProto{
		Name: str("req/v1/req.proto"), Package: str("req.v1"), Syntax: str("proto2"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: str("Inner"), Field: []*descriptorpb.FieldDescriptorProto{field("x", 1, required, tString, "")}},
			{Name: str("Outer"), Field: []*descriptorpb.FieldDescriptorProto{
				field("items", 1, repeated, tMessage, ".req.v1.Inner"),
				field("next", 2, optional, tMessage, ".req.v1.Outer"), // a cycle
			}},
			{Name: str("Plain"), Field: []*descriptorpb.FieldDescriptorProto{
				field("s", 1, optional, tString, ""),
				field("self", 2, optional, tMessage, ".req.v1.Plain"),
			}},
		},
	}
	fd, types := dynamicFile(t, fdp)
	for name, want := range map[string]bool{"Inner": true, "Outer": true, "Plain": false} {
		if got := mayRequire(fd.Messages().ByName(protoreflect.Name(name)), map[protoreflect.FullName]bool{}); got != want {
			t.Errorf("mayRequire(%s) = %v; want %v", name, got, want)
		}
	}
	// An Outer whose next is an Outer of two items, the second without x.
	inner := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "a")
	outer := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), inner)
	outer = protowire.AppendBytes(protowire.AppendTag(outer, 1, protowire.BytesType), nil)
	payload := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), outer)
	for _, p := range []struct {
		typeURL string
		b       []byte
	}{
		{"type.googleapis.com/req.v1.Outer", payload},
		{"type.googleapis.com/req.v1.Inner", nil},
		{"type.googleapis.com/req.v1.Inner", inner},
		{"type.googleapis.com/req.v1.Plain", protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "s")},
	} {
		_, wantErr := decodePayload(types, p.typeURL, p.b)
		msg, sc, err := checkURL(t, types, p.typeURL, p.b)
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Errorf("%s %x: checkPayload error %v; decodePayload's %v", p.typeURL, p.b, err, wantErr)
		}
		if err == nil {
			sc.put(msg)
		}
	}
	if _, wantErr := decodePayload(types, "type.googleapis.com/req.v1.Outer", payload); wantErr == nil {
		t.Error("an Outer with an item that lacks its required field parses; the test checks nothing")
	}
}

// TestCheckPayloadPoolsAreBounded: pools of types that schema pushes
// replaced do not pile up: past maxScratchTypes types, checkPayload
// starts afresh.
func TestCheckPayloadPoolsAreBounded(t *testing.T) {
	fdp := &descriptorpb.FileDescriptorProto{Name: proto.String("many/v1/many.proto"), Package: proto.String("many.v1"), Syntax: proto.String("proto3")}
	for i := range maxScratchTypes + 10 {
		fdp.MessageType = append(fdp.MessageType, &descriptorpb.DescriptorProto{Name: proto.String(fmt.Sprintf("M%d", i))})
	}
	fd, types := dynamicFile(t, fdp)
	for i := range fd.Messages().Len() {
		msg, sc, err := checkURL(t, types, "type.googleapis.com/"+string(fd.Messages().Get(i).FullName()), nil)
		if err != nil {
			t.Fatal(err)
		}
		sc.put(msg)
		n := 0
		scratchMessages.Range(func(any, any) bool { n++; return true })
		if n > maxScratchTypes {
			t.Fatalf("after %d types, %d pools are kept; want at most %d", i+1, n, maxScratchTypes)
		}
	}
}

// dynamicFile builds fdp (which may import the linked schemas) and
// resolves its messages as types pushed at run time.
func dynamicFile(t *testing.T, fdp *descriptorpb.FileDescriptorProto) (protoreflect.FileDescriptor, *dynamicpb.Types) {
	t.Helper()
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	var files protoregistry.Files
	if err := files.RegisterFile(fd); err != nil {
		t.Fatal(err)
	}
	return fd, dynamicpb.NewTypes(&files)
}

// checkURL is checkPayload for a payload of the type of typeURL.
func checkURL(tb testing.TB, types TypeResolver, typeURL string, payload []byte) (proto.Message, *scratch, error) {
	tb.Helper()
	mt, err := payloadType(types, typeURL)
	if err != nil {
		return nil, nil, err
	}
	return checkPayload(types, mt, typeURL, payload)
}

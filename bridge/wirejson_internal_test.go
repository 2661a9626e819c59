package bridge

import (
	"bytes"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	"github.com/heraldhq/herald/internal/broker"
)

// TestWireJSONMatchesProtojson: over random payloads of every kind of
// field that the check accepts, what is rendered from the wire is what
// protojson renders of the decoded message (as a type pushed at run time
// and, for the linked types, the compiled one), byte for byte, by default
// and with proto_names and enum_numbers; and it renders most of them
// rather than giving up.
func TestWireJSONMatchesProtojson(t *testing.T) {
	types, cases := wireCases(t)
	r := rand.New(rand.NewPCG(3, 4))
	render := func(mt protoreflect.MessageType, b []byte, o wireJSONOpts) []byte {
		m := mt.New().Interface()
		if err := (proto.UnmarshalOptions{RecursionLimit: maxPayloadDepth}).Unmarshal(b, m); err != nil {
			t.Fatalf("%x: the check accepted what does not decode: %v", b, err)
		}
		out, err := renderJSON(types, m, protojson.MarshalOptions{UseProtoNames: o.protoNames, UseEnumNumbers: o.enumNumbers})
		if err != nil {
			t.Fatalf("%x: the check accepted what does not render: %v", b, err)
		}
		return out
	}
	for _, c := range cases {
		md := c.dynamic.Descriptor()
		checked, rendered := 0, 0
		const rounds = 6000
		for i := range rounds {
			g := &wireGen{r: r, clean: i%2 == 0, edges: i%3 > 0}
			b := g.message(md, 1)
			if !wireCheck(md, b, maxPayloadDepth) {
				continue
			}
			checked++
			// The default rendering, then proto_names and enum_numbers
			// in turn and together.
			o := wireJSONOpts{protoNames: i%4 >= 2, enumNumbers: i%2 == 1}
			got, ok := appendWireJSON(nil, md, b, o)
			if !ok {
				continue
			}
			rendered++
			if want := render(c.dynamic, b, o); !bytes.Equal(got, want) {
				t.Fatalf("%s %+v, payload %d %x:\nfrom the wire %s\nprotojson     %s", md.FullName(), o, i, b, got, want)
			}
			if c.compiled != nil {
				if want := render(c.compiled, b, o); !bytes.Equal(got, want) {
					t.Fatalf("%s (compiled) %+v, payload %d %x:\nfrom the wire %s\nprotojson     %s", md.FullName(), o, i, b, got, want)
				}
			}
		}
		t.Logf("%s: rendered %d of the %d payloads the check accepted", md.FullName(), rendered, checked)
		if md.FullName() != "wire.v1.Grouped" && rendered < checked*9/10 {
			t.Errorf("%s: rendered %d of %d checked payloads; it should take nearly all", md.FullName(), rendered, checked)
		}
	}
}

// TestWireJSONLeavesClosedEnumsToDecoding: a proto2 enum is closed, and
// decoding keeps a value it does not declare as an unknown field, out of
// the field and of the JSON; the wire rendering does not follow that and
// gives up, where a declared value renders as protojson renders it.
func TestWireJSONLeavesClosedEnumsToDecoding(t *testing.T) {
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED
	enum := descriptorpb.FieldDescriptorProto_TYPE_ENUM
	fdp := &descriptorpb.FileDescriptorProto{
		Name: proto.String("closed/v1/closed.proto"), Package: proto.String("closed.v1"), Syntax: proto.String("proto2"),
		EnumType: []*descriptorpb.EnumDescriptorProto{{Name: proto.String("Level"), Value: []*descriptorpb.EnumValueDescriptorProto{
			{Name: proto.String("LOW"), Number: proto.Int32(1)}, {Name: proto.String("HIGH"), Number: proto.Int32(2)}}}},
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Alarm"), Field: []*descriptorpb.FieldDescriptorProto{
			{Name: proto.String("level"), JsonName: proto.String("level"), Number: proto.Int32(1), Type: enum.Enum(), Label: opt.Enum(), TypeName: proto.String(".closed.v1.Level")},
			{Name: proto.String("levels"), JsonName: proto.String("levels"), Number: proto.Int32(2), Type: enum.Enum(), Label: rep.Enum(), TypeName: proto.String(".closed.v1.Level")},
		}}},
	}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		t.Fatal(err)
	}
	md := fd.Messages().ByName("Alarm")
	mt := dynamicpb.NewMessageType(md)
	for _, c := range []struct {
		payload []byte
		renders bool
	}{
		{protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 2), true},
		{protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 7), false},
		{protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte{1, 2}), true},
		{protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte{1, 9}), false},
	} {
		got, ok := appendWireJSON(nil, md, c.payload, wireJSONOpts{})
		if ok != c.renders {
			t.Fatalf("%x: rendered %v (%s); want %v", c.payload, ok, got, c.renders)
		}
		if !ok {
			continue
		}
		m := mt.New().Interface()
		if err := proto.Unmarshal(c.payload, m); err != nil {
			t.Fatal(err)
		}
		want, err := renderJSON(nil, m, protojson.MarshalOptions{})
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%x: from the wire %s; protojson %s, %v", c.payload, got, want, err)
		}
	}
}

// TestHubRendersPushedTypesFromTheWire: the frame of an event of a type
// pushed at run time is made without decoding it into a message, which
// took 39 allocations where rendering from the wire takes four.
func TestHubRendersPushedTypesFromTheWire(t *testing.T) {
	h := newHub(hubBenchBroker{}, dynamicTypes, slog.New(slog.DiscardHandler), newMetrics(), 1)
	payload, err := proto.Marshal(&chatv1.ChatMessage{Room: "r", MessageId: "m", Author: "a", Text: "hello", SentAt: timestamppb.New(time.Unix(1767225600, 123e6))})
	if err != nil {
		t.Fatal(err)
	}
	var f []byte
	allocs := testing.AllocsPerRun(100, func() {
		ev := &broker.Event{Topic: "r", Type: "chat", TypeURL: "type.googleapis.com/chat.v1.ChatMessage", Payload: payload, Seq: 1}
		f = h.frame(ev)
	})
	if !bytes.Contains(f, []byte(`data: {"room":"r","messageId":"m","author":"a","text":"hello","sentAt":"2026-01-01T00:00:00.123Z"}`)) {
		t.Fatalf("frame:\n%s", f)
	}
	// The event, its rendered record, its id and the frame: the JSON is
	// rendered into a pooled buffer, and the frame kept in the record.
	if allocs > 4 {
		t.Fatalf("%v allocations to make a frame; want at most 4", allocs)
	}
}

// TestFrameHoldsTheJSON: once an event's frame is made, its JSON is the
// part of the frame that holds it, so that an event retained for replays
// keeps it once, not twice; so for a payload rendered from the wire, one
// decoded first (a Struct), and a deletion. The JSON read back (the admin
// API's history reads it) is the frame's data line.
func TestFrameHoldsTheJSON(t *testing.T) {
	h := newHub(hubBenchBroker{}, dynamicTypes, slog.New(slog.DiscardHandler), newMetrics(), 1)
	chat, err := proto.Marshal(&chatv1.ChatMessage{Room: "r", Text: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := structpb.NewStruct(map[string]any{"a": "b"})
	if err != nil {
		t.Fatal(err)
	}
	stb, err := proto.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	other, err := proto.Marshal(&chatv1.ChatMessage{Room: "s", Text: "a longer message, rendered over the first"})
	if err != nil {
		t.Fatal(err)
	}
	// JSON handed out before the frame was made (the admin API's history
	// reads it) stays as it was: frames made after it do not reuse it.
	early := &broker.Event{Topic: "r", Type: "chat", TypeURL: "type.googleapis.com/chat.v1.ChatMessage", Payload: chat, Seq: 9}
	handed := h.eventJSON(early)
	want := bytes.Clone(handed)
	h.frame(early)
	for i := range 10 {
		h.frame(&broker.Event{Topic: "r", Type: "chat", TypeURL: "type.googleapis.com/chat.v1.ChatMessage", Payload: other, Seq: uint64(10 + i)})
	}
	if !bytes.Equal(handed, want) {
		t.Errorf("JSON handed out before its frame was made became %s, want %s", handed, want)
	}

	for _, ev := range []*broker.Event{
		{Topic: "r", Type: "chat", TypeURL: "type.googleapis.com/chat.v1.ChatMessage", Payload: chat, Seq: 1},
		{Topic: "r", Type: "struct", TypeURL: "type.googleapis.com/google.protobuf.Struct", Payload: stb, Seq: 2},
		{Topic: "r", Type: DeletedEventType, Seq: 3},
	} {
		f := h.frame(ev)
		j := h.eventJSON(ev)
		if !bytes.Contains(f, append(append([]byte("\ndata: "), j...), "\n\n"...)) {
			t.Fatalf("%s: the JSON %s is not the frame's data:\n%s", ev.Type, j, f)
		}
		if len(j) == 0 || &j[0] != &f[len(f)-2-len(j)] || cap(j) != len(j) {
			t.Errorf("%s: the JSON is kept apart from the frame that holds it", ev.Type)
		}
	}
}

// BenchmarkWireJSON renders the bench's payload, a chat.v1.ChatMessage:
// from the wire, and decoded and rendered by protojson as the compiled
// type and as a type pushed at run time.
func BenchmarkWireJSON(b *testing.B) {
	payload, err := proto.Marshal(&chatv1.ChatMessage{Room: "bench.t00000", MessageId: "0000000017.1767225600123456789", Author: "herald-bench", Text: "hello", SentAt: timestamppb.Now()})
	if err != nil {
		b.Fatal(err)
	}
	md := (&chatv1.ChatMessage{}).ProtoReflect().Descriptor()
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := appendWireJSON(make([]byte, 0, 2*len(payload)+16), md, payload, wireJSONOpts{}); !ok {
				b.Fatal("not rendered")
			}
		}
	})
	for _, c := range []struct {
		name string
		mt   protoreflect.MessageType
	}{{"compiled", (&chatv1.ChatMessage{}).ProtoReflect().Type()}, {"pushed", mustFind(b, "chat.v1.ChatMessage")}} {
		b.Run("protojson/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m := c.mt.New().Interface()
				if err := proto.Unmarshal(payload, m); err != nil {
					b.Fatal(err)
				}
				if _, err := renderJSON(dynamicTypes, m, protojson.MarshalOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzWireJSON: whatever bytes the check accepts as a message of one of
// the random payloads' types, and the wire rendering takes, render as
// protojson renders the decoded message.
func FuzzWireJSON(f *testing.F) {
	types, cases := wireCases(f)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 64 {
		g := &wireGen{r: r, clean: i%2 == 0, edges: true}
		f.Add(uint8(i*37), g.message(cases[i%len(cases)].dynamic.Descriptor(), 1))
	}
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		mt := cases[int(which)%len(cases)].dynamic
		md := mt.Descriptor()
		if !wireCheck(md, b, maxPayloadDepth) {
			return
		}
		o := wireJSONOpts{protoNames: which&64 != 0, enumNumbers: which&128 != 0}
		got, ok := appendWireJSON(nil, md, b, o)
		if !ok {
			return
		}
		m := mt.New().Interface()
		if err := (proto.UnmarshalOptions{RecursionLimit: maxPayloadDepth}).Unmarshal(b, m); err != nil {
			t.Fatalf("the check accepted what does not decode: %v", err)
		}
		want, err := renderJSON(types, m, protojson.MarshalOptions{UseProtoNames: o.protoNames, UseEnumNumbers: o.enumNumbers})
		if err != nil {
			t.Fatalf("the check accepted what does not render: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s %x:\nfrom the wire %s\nprotojson     %s", md.FullName(), b, got, want)
		}
	})
}

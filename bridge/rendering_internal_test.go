package bridge

import (
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	"github.com/heraldhq/herald/internal/broker"
)

// A field mask selects fields of a JSON object. A well-known type that
// protojson renders in a form of its own is kept whole: a path into it
// selects all of it, and a payload of such a type is sent whole. Clearing
// a Value's kind made it unrenderable, and its subscribers were told the
// payload type was unknown.
func TestFieldMasksKeepWellKnownTypesWhole(t *testing.T) {
	h := newHub(epochBroker{}, protoregistry.GlobalTypes, slog.New(slog.DiscardHandler), newMetrics(), 4)
	event := func(m proto.Message, typeURL string) *broker.Event {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return &broker.Event{Topic: "t", TypeURL: typeURL, Payload: b}
	}
	value := event(structpb.NewStringValue("abc"), "type.googleapis.com/google.protobuf.Value")
	chat := event(&chatv1.ChatMessage{Room: "r", Text: "hi", SentAt: timestamppb.New(time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC))},
		"type.googleapis.com/chat.v1.ChatMessage")
	for _, tc := range []struct {
		name string
		ev   *broker.Event
		r    Rendering
		want string
	}{
		{"a Value payload, a path inside it", value, Rendering{Fields: []string{"number_value"}}, `"abc"`},
		{"the same, unpopulated fields emitted", value, Rendering{Fields: []string{"number_value"}, EmitUnpopulated: true}, `"abc"`},
		{"a path into a Timestamp field", chat, Rendering{Fields: []string{"sentAt.seconds"}}, `{"sentAt":"2026-12-03T00:00:00Z"}`},
		{"the same, unpopulated fields emitted", chat, Rendering{Fields: []string{"room", "sent_at.nanos"}, EmitUnpopulated: true}, `{"room":"r","sentAt":"2026-12-03T00:00:00Z"}`},
	} {
		got, err := h.render(tc.ev, &tc.r)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

package bridge_test

import (
	"math"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/schema/schematest"
)

// renderProtos are pushed types whose payloads protojson may refuse after
// they parse: a proto2 string (not checked for UTF-8 when parsed) and a
// Timestamp deep in a recursive type.
var renderProtos = map[string]string{
	"render/v1/legacy.proto": `syntax = "proto2";
package render.v1;
message Legacy { optional string s = 1; }
`,
	"render/v1/tree.proto": `syntax = "proto3";
package render.v1;
import "google/protobuf/timestamp.proto";
message Tree {
  string name = 1;
  repeated Tree children = 2;
  map<string, google.protobuf.Timestamp> stamps = 3;
}
`,
}

// TestPublishRefusesWhatCannotRender: a payload that parses and validates
// but has no JSON form is refused with INVALID_ARGUMENT, over Publish and
// PublishStream, whether the publish path checks it without rendering it
// (an out-of-range Timestamp) or renders it to find out; and it never
// reaches a subscriber.
func TestPublishRefusesWhatCannotRender(t *testing.T) {
	s := startServer(t, serverOpts{})
	set := schematest.Compile(t, renderProtos)
	if _, err := s.schemas.RegisterSchemas(ctxT(t), &heraldv1.RegisterSchemasRequest{Descriptors: set}); err != nil {
		t.Fatal(err)
	}
	raw := func(typeName string, b []byte) *heraldv1.PublishRequest {
		return &heraldv1.PublishRequest{Topic: "render.t", Payload: &anypb.Any{TypeUrl: "type.googleapis.com/" + typeName, Value: b}}
	}
	// Tree{children: [Tree{stamps: {"k": {seconds: max+1}}}]}, by hand.
	stamp := protowire.AppendTag(nil, 1, protowire.VarintType)
	stamp = protowire.AppendVarint(stamp, 253402300800)
	entry := protowire.AppendTag(nil, 1, protowire.BytesType)
	entry = protowire.AppendString(entry, "k")
	entry = protowire.AppendTag(entry, 2, protowire.BytesType)
	entry = protowire.AppendBytes(entry, stamp)
	child := protowire.AppendTag(nil, 3, protowire.BytesType)
	child = protowire.AppendBytes(child, entry)
	tree := protowire.AppendTag(nil, 2, protowire.BytesType)
	tree = protowire.AppendBytes(tree, child)
	// Legacy{s: "\xff"}.
	legacy := protowire.AppendTag(nil, 1, protowire.BytesType)
	legacy = protowire.AppendString(legacy, "\xff")
	unknownAny := &anypb.Any{TypeUrl: "type.googleapis.com/nobody.v1.Knows", Value: []byte{8, 1}}

	for _, tt := range []struct {
		name, want string
		req        *heraldv1.PublishRequest
	}{
		{"timestamp seconds", "seconds out of range", request(t, "render.t", &chatv1.ChatMessage{Room: "r", SentAt: &timestamppb.Timestamp{Seconds: 253402300800}})},
		{"timestamp nanos", "nanos out of range", request(t, "render.t", &chatv1.ChatMessage{Room: "r", SentAt: &timestamppb.Timestamp{Seconds: 1, Nanos: -1}})},
		{"nested timestamp", "seconds out of range", raw("render.v1.Tree", tree)},
		{"proto2 string", "UTF-8", raw("render.v1.Legacy", legacy)},
		{"any of an unknown type", "nobody.v1.Knows", request(t, "render.t", unknownAny)},
		{"NaN value", "NaN", request(t, "render.t", structpb.NewNumberValue(math.NaN()))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.client.Publish(ctxT(t), tt.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "cannot be rendered as JSON") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Publish: %v; want INVALID_ARGUMENT: cannot be rendered as JSON … %s", err, tt.want)
			}
			ps, err := s.client.PublishStream(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := ps.Send(tt.req); err != nil {
				t.Fatal(err)
			}
			resp, err := ps.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if e := resp.GetError(); codes.Code(e.GetCode()) != codes.InvalidArgument || !strings.Contains(e.GetMessage(), tt.want) || resp.GetId() != "" {
				t.Errorf("PublishStream answered %v; want an INVALID_ARGUMENT error naming %q", resp, tt.want)
			}
			if err := ps.CloseSend(); err != nil {
				t.Fatal(err)
			}
		})
	}

	// None of them was accepted: the next event is the broker's first,
	// and it is the first a subscriber resuming from before it gets.
	good := &chatv1.ChatMessage{Room: "r"}
	id := s.publish(t, "render.t", good)
	if want := s.broker.Epoch() + "-1"; id != want {
		t.Fatalf("the next event has id %s, want %s", id, want)
	}
	st := s.subscribe(t, "topic=render.t&last_event_id="+s.broker.Epoch()+"-0", nil)
	checkEvent(t, st.next(t), id, "chat.v1.ChatMessage", good)
}

// TestPublishedEventsRenderOnDelivery: events the publish path does not
// render arrive with the same JSON as those it does.
func TestPublishedEventsRenderOnDelivery(t *testing.T) {
	s := startServer(t, serverOpts{})
	set := schematest.Compile(t, renderProtos)
	if _, err := s.schemas.RegisterSchemas(ctxT(t), &heraldv1.RegisterSchemasRequest{Descriptors: set}); err != nil {
		t.Fatal(err)
	}
	st := s.subscribe(t, "topic=render.t", nil)
	tree := dynamicMessage(t, set, "render.v1.Tree", `{"name":"root","children":[{"name":"leaf","stamps":{"k":"9999-12-31T23:59:59.999999999Z"}}]}`)
	inner, err := anypb.New(&chatv1.ChatMessage{Room: "in-an-any"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		msg  proto.Message
		typ  string
		want string
	}{
		{&chatv1.ChatMessage{Room: "r", Author: "a", Text: "t\u00e9\"", SentAt: &timestamppb.Timestamp{Seconds: 1767225600, Nanos: 5}},
			"chat.v1.ChatMessage", `{"room":"r","author":"a","text":"té\"","sentAt":"2026-01-01T00:00:00.000000005Z"}`},
		{&chatv1.ChatMessage{SentAt: &timestamppb.Timestamp{Seconds: -62135596800}},
			"chat.v1.ChatMessage", `{"sentAt":"0001-01-01T00:00:00Z"}`},
		{tree, "render.v1.Tree", `{"name":"root","children":[{"name":"leaf","stamps":{"k":"9999-12-31T23:59:59.999999999Z"}}]}`},
		// Rendered by the publish path, for comparison.
		{inner, "google.protobuf.Any", `{"@type":"type.googleapis.com/chat.v1.ChatMessage","room":"in-an-any"}`},
	} {
		id := s.publish(t, "render.t", tt.msg)
		ev := st.next(t)
		if ev.LastEventID != id || ev.Type != tt.typ || ev.Data != tt.want {
			t.Errorf("got %q %q %s; want %q %q %s", ev.LastEventID, ev.Type, ev.Data, id, tt.typ, tt.want)
		}
	}
}

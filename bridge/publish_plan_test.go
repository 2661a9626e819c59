package bridge

import (
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	monitoringv1 "github.com/heraldhq/herald/gen/monitoring/v1"
	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
	"github.com/heraldhq/herald/internal/schema/schematest"
)

// planProtos are types that exercise every branch of the render plan.
var planProtos = map[string]string{
	"plan/v1/plan.proto": `syntax = "proto3";
package plan.v1;
import "google/protobuf/any.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/timestamp.proto";

message Plain { string s = 1; bytes b = 2; double d = 3; map<string, string> m = 4; Plain next = 5; }
message Tree {
  string name = 1;
  repeated Tree children = 2;
  map<string, Tree> named = 3;
  google.protobuf.Timestamp at = 4;
  repeated google.protobuf.Duration took = 5;
  map<int32, google.protobuf.Timestamp> stamps = 6;
  oneof when { google.protobuf.Timestamp since = 7; Plain plain = 8; }
}
message HasAny { Plain p = 1; Deep deep = 2; }
message Deep { repeated Deeper d = 1; }
message Deeper { google.protobuf.Any any = 1; }
message HasStruct { map<string, google.protobuf.Value> v = 1; }
// A cycle through a type that needs rendering.
message CycleA { CycleB b = 1; google.protobuf.Timestamp at = 2; }
message CycleB { CycleA a = 1; google.protobuf.Struct s = 2; }
`,
	"plan/v1/legacy.proto": `syntax = "proto2";
package plan.v1;
message Legacy { optional string s = 1; optional int32 n = 2; }
message LegacyNoStrings { optional int32 n = 1; optional bytes b = 2; }
message Extendable { optional int32 n = 1; extensions 100 to 200; }
message LegacyMapKey { map<string, int32> m = 1; }
`,
	"plan/v1/ed.proto": `edition = "2023";
package plan.v1;
message EdVerify { string s = 1; }
message EdNone { string s = 1 [features.utf8_validation = NONE]; }
message EdNoneMapValue { map<int32, string> m = 1 [features.utf8_validation = NONE]; }
`,
}

func planTypes(t *testing.T) *protoregistry.Files {
	t.Helper()
	files, err := protodesc.NewFiles(schematest.Compile(t, planProtos))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func planDesc(t *testing.T, files *protoregistry.Files, name string) protoreflect.MessageDescriptor {
	t.Helper()
	d, err := files.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		t.Fatal(err)
	}
	return d.(protoreflect.MessageDescriptor)
}

func TestRenderPlanClassifiesTypes(t *testing.T) {
	t.Parallel()
	files := planTypes(t)
	// Types named as struct.proto's but not shaped as them: protojson
	// treats them as its own all the same, so only rendering can tell.
	oddFiles, err := protodesc.NewFiles(schematest.Compile(t, map[string]string{
		"odd/v1/wkt.proto": `syntax = "proto3";
package google.protobuf;
message Value { oneof kind { string string_value = 3; Struct struct_value = 5; } double number_value = 2; }
message Struct { map<string, string> fields = 1; }
message ListValue { repeated string values = 1; }
`,
		"odd/v1/odd.proto": `syntax = "proto3";
package odd.v1;
import "odd/v1/wkt.proto";
message HasOddValue { google.protobuf.Value v = 1; }
`,
	}))
	if err != nil {
		t.Fatal(err)
	}
	odd := oddFiles
	type want struct{ eager, checks bool }
	for _, tt := range []struct {
		md   protoreflect.MessageDescriptor
		want want
	}{
		{(&chatv1.ChatMessage{}).ProtoReflect().Descriptor(), want{checks: true}},
		{(&ordersv1.OrderPlaced{}).ProtoReflect().Descriptor(), want{checks: true}},
		{(&monitoringv1.ServerStats{}).ProtoReflect().Descriptor(), want{checks: true}},
		{(&timestamppb.Timestamp{}).ProtoReflect().Descriptor(), want{checks: true}},
		{(&durationpb.Duration{}).ProtoReflect().Descriptor(), want{checks: true}},
		{(&wrapperspb.StringValue{}).ProtoReflect().Descriptor(), want{}},
		{(&emptypb.Empty{}).ProtoReflect().Descriptor(), want{}},
		{(&anypb.Any{}).ProtoReflect().Descriptor(), want{eager: true}},
		{(&structpb.Struct{}).ProtoReflect().Descriptor(), want{checks: true}},
		{(&structpb.Value{}).ProtoReflect().Descriptor(), want{checks: true}},
		{(&structpb.ListValue{}).ProtoReflect().Descriptor(), want{checks: true}},
		{(&fieldmaskpb.FieldMask{}).ProtoReflect().Descriptor(), want{eager: true}},
		{planDesc(t, files, "plan.v1.Plain"), want{}},
		{planDesc(t, files, "plan.v1.Tree"), want{checks: true}},
		{planDesc(t, files, "plan.v1.HasAny"), want{eager: true}},
		{planDesc(t, files, "plan.v1.HasStruct"), want{checks: true}},
		{planDesc(t, files, "plan.v1.CycleA"), want{checks: true}},
		{planDesc(t, files, "plan.v1.CycleB"), want{checks: true}},
		{planDesc(t, files, "plan.v1.Legacy"), want{eager: true}},
		{planDesc(t, files, "plan.v1.LegacyNoStrings"), want{}},
		{planDesc(t, files, "plan.v1.Extendable"), want{eager: true}},
		{planDesc(t, files, "plan.v1.LegacyMapKey"), want{eager: true}},
		{planDesc(t, files, "plan.v1.EdVerify"), want{}},
		{planDesc(t, files, "plan.v1.EdNone"), want{eager: true}},
		{planDesc(t, files, "plan.v1.EdNoneMapValue"), want{eager: true}},
		{planDesc(t, odd, "google.protobuf.Value"), want{eager: true}},
		{planDesc(t, odd, "google.protobuf.Struct"), want{eager: true}},
		{planDesc(t, odd, "google.protobuf.ListValue"), want{eager: true}},
		{planDesc(t, odd, "odd.v1.HasOddValue"), want{eager: true}},
	} {
		p := planFor(tt.md)
		got := want{eager: p.eager, checks: p.leaf != leafNone || len(p.checks) > 0}
		if got != tt.want {
			t.Errorf("%s: eager %v, checks %v; want eager %v, checks %v", tt.md.FullName(), got.eager, got.checks, tt.want.eager, tt.want.checks)
		}
		if planFor(tt.md) != p {
			t.Errorf("%s: the plan is not cached", tt.md.FullName())
		}
	}
}

// TestRenderPlanAgreesWithProtojson checks the plan against protojson on
// values at and beyond the edges of what it renders: whenever the plan
// says a message renders, protojson must render it.
func TestRenderPlanAgreesWithProtojson(t *testing.T) {
	t.Parallel()
	files := planTypes(t)
	tree := planDesc(t, files, "plan.v1.Tree")
	ts := func(s int64, n int32) *timestamppb.Timestamp { return &timestamppb.Timestamp{Seconds: s, Nanos: n} }
	du := func(s int64, n int32) *durationpb.Duration { return &durationpb.Duration{Seconds: s, Nanos: n} }
	var msgs []proto.Message
	for _, s := range []int64{math.MinInt64, minTimestampSeconds - 1, minTimestampSeconds, 0, maxTimestampSeconds, maxTimestampSeconds + 1, math.MaxInt64} {
		for _, n := range []int32{math.MinInt32, -1, 0, maxNanos, maxNanos + 1} {
			msgs = append(msgs, ts(s, n), &chatv1.ChatMessage{SentAt: ts(s, n)})
		}
	}
	for _, s := range []int64{math.MinInt64, -maxDurationSeconds - 1, -maxDurationSeconds, -1, 0, 1, maxDurationSeconds, maxDurationSeconds + 1} {
		for _, n := range []int32{-maxNanos - 1, -maxNanos, -1, 0, 1, maxNanos, maxNanos + 1} {
			msgs = append(msgs, du(s, n))
		}
	}
	// Dynamic trees with a bad value in every place a Timestamp or
	// Duration can hide.
	bad, good := ts(maxTimestampSeconds+1, 0), ts(1767225600, 5)
	for _, j := range []string{
		`{"name":"ok","at":"2026-01-01T00:00:00Z","children":[{"took":["1s","-2.5s"]}],"named":{"x":{"since":"2026-01-01T00:00:00Z"}}}`,
		`{"plain":{"s":"x"}}`,
		`{}`,
	} {
		m := dynamicpb.NewMessage(tree)
		if err := protojson.Unmarshal([]byte(j), m); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	set := func(m protoreflect.Message, field string, v protoreflect.Value) *dynamicpb.Message {
		m.Set(m.Descriptor().Fields().ByName(protoreflect.Name(field)), v)
		return m.(*dynamicpb.Message)
	}
	for _, stamp := range []*timestamppb.Timestamp{bad, good} {
		v := protoreflect.ValueOfMessage(stamp.ProtoReflect())
		msgs = append(msgs, set(dynamicpb.NewMessage(tree), "at", v), set(dynamicpb.NewMessage(tree), "since", v))
		child := set(dynamicpb.NewMessage(tree), "at", v)
		root := dynamicpb.NewMessage(tree)
		l := root.Mutable(tree.Fields().ByName("children")).List()
		l.Append(protoreflect.ValueOfMessage(dynamicpb.NewMessage(tree)))
		l.Append(protoreflect.ValueOfMessage(child))
		msgs = append(msgs, root)
		root = dynamicpb.NewMessage(tree)
		root.Mutable(tree.Fields().ByName("named")).Map().Set(protoreflect.ValueOfString("k").MapKey(), protoreflect.ValueOfMessage(child))
		msgs = append(msgs, root)
		root = dynamicpb.NewMessage(tree)
		root.Mutable(tree.Fields().ByName("stamps")).Map().Set(protoreflect.ValueOfInt32(3).MapKey(), v)
		msgs = append(msgs, root)
	}
	root := dynamicpb.NewMessage(tree)
	root.Mutable(tree.Fields().ByName("took")).List().Append(protoreflect.ValueOfMessage(du(1, -1).ProtoReflect()))
	msgs = append(msgs, root)
	msgs = append(msgs, structCases(t, files)...)

	var renders, refused int
	for _, m := range msgs {
		r := m.ProtoReflect()
		planned := planFor(r.Descriptor()).renders(r)
		_, err := protojson.Marshal(m)
		if planned && err != nil {
			t.Errorf("plan says %v renders, protojson: %v", m, err)
		}
		// Timestamps, Durations, Values and the trees are checked
		// exactly: the plan never sends a good one to be rendered.
		if !planned && err == nil {
			t.Errorf("plan says %v may not render, but it does", m)
		}
		if planned {
			renders++
		} else {
			refused++
		}
	}
	if renders == 0 || refused == 0 {
		t.Fatalf("%d rendered, %d refused: the cases do not cover both", renders, refused)
	}
}

// structCases are Structs, Values and ListValues, generated and dynamic,
// with a value protojson refuses (NaN, an infinity, a Value with no kind)
// in every place one can hide, and the same with good values.
func structCases(t *testing.T, files *protoregistry.Files) []proto.Message {
	t.Helper()
	var msgs []proto.Message
	leaves := map[string]*structpb.Value{
		"null": structpb.NewNullValue(), "number": structpb.NewNumberValue(-1.5e300), "string": structpb.NewStringValue("ü"),
		"bool": structpb.NewBoolValue(true), "empty struct": structpb.NewStructValue(&structpb.Struct{}),
		"empty list": structpb.NewListValue(&structpb.ListValue{}),
		"NaN":        structpb.NewNumberValue(math.NaN()), "+Inf": structpb.NewNumberValue(math.Inf(1)),
		"-Inf": structpb.NewNumberValue(math.Inf(-1)), "no kind": {},
	}
	for _, leaf := range leaves {
		// The leaf alone, in a Struct, in a list, and two levels down
		// beside good values.
		inStruct := &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewBoolValue(false), "leaf": leaf}}
		inList := &structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("x"), leaf}}
		deep := &structpb.Struct{Fields: map[string]*structpb.Value{
			"list": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStructValue(inStruct)}}),
			"ok":   structpb.NewNumberValue(1),
		}}
		msgs = append(msgs, leaf, inStruct, inList, deep, structpb.NewListValue(inList), structpb.NewStructValue(deep))
		// The same as dynamic messages of a type that holds them.
		hs := planDesc(t, files, "plan.v1.HasStruct")
		m := dynamicpb.NewMessage(hs)
		b, err := proto.Marshal(&structpb.Struct{Fields: map[string]*structpb.Value{"v": structpb.NewStructValue(deep)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := proto.Unmarshal(b, m); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
		cb := planDesc(t, files, "plan.v1.CycleB")
		c := dynamicpb.NewMessage(cb)
		if b, err = proto.Marshal(deep); err != nil {
			t.Fatal(err)
		}
		sf := cb.Fields().ByName("s")
		sm := c.Mutable(sf).Message()
		if err := proto.Unmarshal(b, sm.Interface()); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, c)
	}
	return msgs
}

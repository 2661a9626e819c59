package bridge_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/heraldhq/herald/bridge"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
	"github.com/heraldhq/herald/internal/schema/schematest"
)

// cartProto is a schema Herald was not built with.
const cartProto = `syntax = "proto3";
package shop.v1;
import "buf/validate/validate.proto";
import "google/protobuf/timestamp.proto";

message CartUpdated {
  string cart_id = 1 [(buf.validate.field).string.min_len = 1];
  repeated Item items = 2;
  Status status = 3;
  google.protobuf.Timestamp at = 4;
}
message Item {
  string sku = 1;
  int32 quantity = 2 [(buf.validate.field).int32.gt = 0];
}
enum Status {
  STATUS_UNSPECIFIED = 0;
  STATUS_OPEN = 1;
  STATUS_CHECKED_OUT = 2;
}
`

// dynamicMessage builds a message of a pushed type from its JSON.
func dynamicMessage(t testing.TB, set *descriptorpb.FileDescriptorSet, name, jsonText string) proto.Message {
	t.Helper()
	files, err := protodesc.NewFiles(set)
	if err != nil {
		t.Fatal(err)
	}
	d, err := files.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		t.Fatal(err)
	}
	msg := dynamicpb.NewMessage(d.(protoreflect.MessageDescriptor))
	if err := protojson.Unmarshal([]byte(jsonText), msg); err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestPushedSchemaIsPublishableAndRendered(t *testing.T) {
	s := startServer(t, serverOpts{})
	set := schematest.Compile(t, map[string]string{"shop/v1/cart.proto": cartProto})
	cart := dynamicMessage(t, set, "shop.v1.CartUpdated", `{"cartId":"c-1","items":[{"sku":"KB-01","quantity":2}],"status":"STATUS_OPEN"}`)

	// Unknown before the push.
	_, err := s.client.Publish(ctxT(t), request(t, "shop.carts", cart))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "shop.v1.CartUpdated") {
		t.Fatalf("publish before push: %v, want INVALID_ARGUMENT naming the type", err)
	}
	resp, err := s.schemas.RegisterSchemas(ctxT(t), &heraldv1.RegisterSchemasRequest{Descriptors: set})
	if err != nil {
		t.Fatal(err)
	}
	if !contains(resp.GetAdded(), "shop.v1.CartUpdated") || !contains(resp.GetAdded(), "shop.v1.Item") {
		t.Fatalf("added = %v", resp.GetAdded())
	}

	st := s.subscribe(t, "topic=shop.carts", nil)
	id := s.publish(t, "shop.carts", cart)
	ev := st.next(t)
	if ev.LastEventID != id || ev.Type != "shop.v1.CartUpdated" || ev.Data != `{"cartId":"c-1","items":[{"sku":"KB-01","quantity":2}],"status":"STATUS_OPEN"}` {
		t.Fatalf("got %q %q %s", ev.LastEventID, ev.Type, ev.Data)
	}

	// Over REST, the Any in its JSON form with the pushed type.
	body := `{"payload":{"@type":"type.googleapis.com/shop.v1.CartUpdated","cartId":"c-2","status":"STATUS_CHECKED_OUT"}}`
	r, err := http.Post(s.url+"/v1/topics/shop.carts/events", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("REST publish of a pushed type: %d", r.StatusCode)
	}
	if ev := st.next(t); ev.Data != `{"cartId":"c-2","status":"STATUS_CHECKED_OUT"}` {
		t.Fatalf("REST-published event data %s", ev.Data)
	}

	// Discovery: listed as pushed, described with a JSON Schema.
	list, err := s.schemas.ListSchemas(ctxT(t), &heraldv1.ListSchemasRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, sc := range list.GetSchemas() {
		if sc.GetName() == "shop.v1.CartUpdated" {
			found = sc.GetSource() == heraldv1.SchemaSource_SCHEMA_SOURCE_PUSHED && sc.GetFile() == "shop/v1/cart.proto"
		}
	}
	if !found {
		t.Fatal("ListSchemas does not list shop.v1.CartUpdated as pushed from shop/v1/cart.proto")
	}
	r, err = http.Get(s.url + "/v1/schemas/shop.v1.CartUpdated")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(r.Body)
	r.Body.Close()
	var got struct {
		JSONSchema struct {
			Properties map[string]map[string]any
			Defs       map[string]any `json:"$defs"`
		}
	}
	if err := json.Unmarshal(raw, &got); err != nil || r.StatusCode != 200 {
		t.Fatalf("GET /v1/schemas/shop.v1.CartUpdated: %d %s", r.StatusCode, raw)
	}
	props := got.JSONSchema.Properties
	if props["cartId"]["type"] != "string" || props["items"]["type"] != "array" || props["at"]["format"] != "date-time" ||
		len(props["status"]["enum"].([]any)) != 3 || got.JSONSchema.Defs["shop.v1.Item"] == nil {
		t.Fatalf("JSON Schema %s", raw)
	}
	if r, _ := http.Get(s.url + "/v1/schemas/shop.v1.Nope"); r.StatusCode != 404 {
		t.Fatalf("GET an unknown schema: %d, want 404", r.StatusCode)
	}
}

func TestIncompatibleSchemaIsRefusedAndTheOldOneKeepsWorking(t *testing.T) {
	s := startServer(t, serverOpts{})
	set := schematest.Compile(t, map[string]string{"shop/v1/cart.proto": cartProto})
	if _, err := s.schemas.RegisterSchemas(ctxT(t), &heraldv1.RegisterSchemasRequest{Descriptors: set}); err != nil {
		t.Fatal(err)
	}
	// A compatible evolution: a new field and a new message.
	evolved := strings.Replace(cartProto, "  google.protobuf.Timestamp at = 4;\n", "  google.protobuf.Timestamp at = 4;\n  string note = 5;\n", 1) + "message CartEmptied { string cart_id = 1; }\n"
	resp, err := s.schemas.RegisterSchemas(ctxT(t), &heraldv1.RegisterSchemasRequest{Descriptors: schematest.Compile(t, map[string]string{"shop/v1/cart.proto": evolved})})
	if err != nil {
		t.Fatalf("compatible evolution refused: %v", err)
	}
	if !contains(resp.GetAdded(), "shop.v1.CartEmptied") || !contains(resp.GetUpdated(), "shop.v1.CartUpdated") {
		t.Fatalf("added %v updated %v", resp.GetAdded(), resp.GetUpdated())
	}

	// Incompatible: a field changes type, another is renamed, one vanishes.
	broken := strings.NewReplacer(
		"string cart_id = 1 [(buf.validate.field).string.min_len = 1];", "int64 cart_id = 1;",
		"int32 quantity = 2", "int32 qty = 2",
		"  Status status = 3;\n", "",
	).Replace(evolved)
	_, err = s.schemas.RegisterSchemas(ctxT(t), &heraldv1.RegisterSchemasRequest{Descriptors: schematest.Compile(t, map[string]string{"shop/v1/cart.proto": broken})})
	msg := status.Convert(err).Message()
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("incompatible redefinition: %v, want FAILED_PRECONDITION", err)
	}
	for _, want := range []string{"shop.v1.CartUpdated field 1 (cart_id) changed type from string to int64", "shop.v1.Item field 2 (quantity) was renamed to qty", "shop.v1.CartUpdated field 3 (status) was removed"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal %q does not list %q", msg, want)
		}
	}
	// Redefining a message in another file is refused too.
	_, err = s.schemas.RegisterSchemas(ctxT(t), &heraldv1.RegisterSchemasRequest{Descriptors: schematest.Compile(t, map[string]string{"other/cart.proto": "syntax = \"proto3\";\npackage shop.v1;\nmessage CartUpdated { string cart_id = 1; }\n"})})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "shop.v1.CartUpdated is already defined in shop/v1/cart.proto") {
		t.Fatalf("redefinition in another file: %v", err)
	}

	// The old (evolved) type still works, with its new field.
	st := s.subscribe(t, "topic=shop.carts", nil)
	s.publish(t, "shop.carts", dynamicMessage(t, schematest.Compile(t, map[string]string{"shop/v1/cart.proto": evolved}), "shop.v1.CartUpdated", `{"cartId":"c-9","note":"still here"}`))
	if ev := st.next(t); ev.Data != `{"cartId":"c-9","note":"still here"}` {
		t.Fatalf("after the refused push: %s", ev.Data)
	}
}

func TestConstraintViolationsNameTheFields(t *testing.T) {
	s := startServer(t, serverOpts{})
	set := schematest.Compile(t, map[string]string{"shop/v1/cart.proto": cartProto})
	if _, err := s.schemas.RegisterSchemas(ctxT(t), &heraldv1.RegisterSchemasRequest{Descriptors: set}); err != nil {
		t.Fatal(err)
	}
	bad := dynamicMessage(t, set, "shop.v1.CartUpdated", `{"cartId":"","items":[{"sku":"a","quantity":1},{"sku":"b","quantity":0}]}`)
	_, err := s.client.Publish(ctxT(t), request(t, "shop.carts", bad))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("err = %v, want INVALID_ARGUMENT", err)
	}
	fields := map[string]bool{}
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields[v.GetField()] = true
			}
		}
	}
	if !fields["cart_id"] || !fields["items[1].quantity"] || len(fields) != 2 {
		t.Fatalf("violations %v, want cart_id and items[1].quantity; message %q", fields, status.Convert(err).Message())
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "items[1].quantity") || !strings.Contains(msg, "cart_id") {
		t.Fatalf("message %q does not name the fields", msg)
	}
	// Over REST: 400 with the paths in the message.
	body := `{"payload":{"@type":"type.googleapis.com/shop.v1.CartUpdated","cartId":"","items":[{"sku":"b","quantity":-1}]}}`
	r, err := http.Post(s.url+"/v1/topics/shop.carts/events", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 400 || !strings.Contains(string(raw), "items[0].quantity") {
		t.Fatalf("REST: %d %s", r.StatusCode, raw)
	}
}

func TestRenderingOptions(t *testing.T) {
	s := startServer(t, serverOpts{})
	o := &ordersv1.OrderPlaced{OrderId: "o-1", Customer: "Zoë", TotalCents: 4200, Channel: ordersv1.Channel_CHANNEL_WEB,
		Items: []*ordersv1.LineItem{{Sku: "KB-01", Quantity: 1}}}
	cases := []struct {
		name  string
		query string
		want  string
	}{
		{"default", "", `{"orderId":"o-1","customer":"Zoë","items":[{"sku":"KB-01","quantity":1}],"totalCents":"4200","channel":"CHANNEL_WEB"}`},
		{"proto names", "proto_names=true", `{"order_id":"o-1","customer":"Zoë","items":[{"sku":"KB-01","quantity":1}],"total_cents":"4200","channel":"CHANNEL_WEB"}`},
		{"enum numbers", "enum_numbers=true", `{"orderId":"o-1","customer":"Zoë","items":[{"sku":"KB-01","quantity":1}],"totalCents":"4200","channel":1}`},
		{"fields, JSON and proto names", "fields=orderId,total_cents", `{"orderId":"o-1","totalCents":"4200"}`},
		{"fields and enum numbers", "fields=channel&enum_numbers=1", `{"channel":1}`},
		{"emit unpopulated", "emit_unpopulated=true&fields=currency,placedAt,orderId", `{"orderId":"o-1","currency":"","placedAt":null}`},
		{"envelope", "envelope=true", `{"type":"orders.v1.OrderPlaced","payload":{"orderId":"o-1","customer":"Zoë","items":[{"sku":"KB-01","quantity":1}],"totalCents":"4200","channel":"CHANNEL_WEB"}}`},
		{"envelope and fields", "envelope=true&fields=orderId", `{"type":"orders.v1.OrderPlaced","payload":{"orderId":"o-1"}}`},
	}
	var streams []*stream
	for _, tc := range cases {
		st := s.subscribe(t, "topic=orders.eu&"+tc.query, nil)
		if st.resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", tc.name, st.resp.StatusCode)
		}
		streams = append(streams, st)
	}
	// Many subscribers sharing one rendering: encoded once per event.
	for range 20 {
		s.subscribe(t, "topic=orders.eu&fields=orderId,total_cents", nil)
	}
	id := s.publish(t, "orders.eu", o)
	for i, tc := range cases {
		ev := streams[i].next(t)
		var got, want any
		_ = json.Unmarshal([]byte(ev.Data), &got)
		_ = json.Unmarshal([]byte(tc.want), &want)
		if ev.LastEventID != id || !jsonEqual(got, want) {
			t.Errorf("%s: data %s, want %s", tc.name, ev.Data, tc.want)
		}
		// An envelope frame has no event: line, so onmessage gets it.
		if wantType := map[bool]string{true: "", false: "orders.v1.OrderPlaced"}[strings.Contains(tc.query, "envelope")]; ev.Type != wantType {
			t.Errorf("%s: event type %q, want %q", tc.name, ev.Type, wantType)
		}
	}
	// Seven non-default renderings were asked for: seven encodings, however
	// many subscribers share them.
	if got := metricValue(t, s.url, "herald_render_encodings_total"); got != 7 {
		t.Errorf("herald_render_encodings_total = %v, want 7", got)
	}

	for _, bad := range []struct{ query, want string }{
		{"fields=nosuchfield", "nosuchfield"},
		{"fields=items.sku", "items.sku"},
		{"fields=a..b", "a..b"},
		{"proto_names=maybe", "proto_names"},
		{"envelope=yes", "envelope"},
	} {
		r, err := http.Get(s.url + "/v1/events?topic=orders.eu&" + bad.query)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != 400 || !strings.Contains(string(raw), bad.want) {
			t.Errorf("%s: %d %s, want 400 naming %q", bad.query, r.StatusCode, raw, bad.want)
		}
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// metricValue reads one unlabelled metric from /metrics.
func metricValue(t testing.TB, base, name string) float64 {
	t.Helper()
	r, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	raw, _ := io.ReadAll(r.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// Under envelope=true a gap comes unnamed too, its type inside the data,
// so that a page listening only with onmessage still learns of it.
func TestEnvelopeGap(t *testing.T) {
	s := startServer(t, serverOpts{})
	id := s.publish(t, "orders.eu", order("o-1"))
	st := s.subscribe(t, "topic=orders.eu&envelope=true&last_event_id=not-an-id", nil)
	gap := st.next(t)
	var got struct {
		Type    string
		Payload struct{ LastEventID, Reason string }
	}
	if err := json.Unmarshal([]byte(gap.Data), &got); err != nil || gap.Type != "" || got.Type != bridge.GapEventType || got.Payload.LastEventID != "not-an-id" || got.Payload.Reason == "" {
		t.Fatalf("gap frame: type %q data %s (%v), want an unnamed herald.gap envelope", gap.Type, gap.Data, err)
	}
	if ev := st.next(t); ev.LastEventID != id || ev.Type != "" || !strings.HasPrefix(ev.Data, `{"type":"orders.v1.OrderPlaced","payload":`) {
		t.Fatalf("replayed event: %q %q %s", ev.LastEventID, ev.Type, ev.Data)
	}
}

// A push over REST carries the set as JSON, buf.validate options included:
// the gateway must know those extensions to decode it.
func TestRESTPushWithConstraints(t *testing.T) {
	s := startServer(t, serverOpts{})
	set := schematest.Compile(t, map[string]string{"shop/v1/cart.proto": cartProto})
	raw, err := protojson.Marshal(&heraldv1.RegisterSchemasRequest{Descriptors: set})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "buf.validate.field") {
		t.Fatalf("the set's JSON lacks its constraints: %s", raw)
	}
	r, err := http.Post(s.url+"/v1/schemas", "application/json", strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || !strings.Contains(string(body), "shop.v1.CartUpdated") {
		t.Fatalf("REST push of a set with constraints: %d %s", r.StatusCode, body)
	}
	// The constraint came through: an empty cart_id is refused.
	_, err = s.client.Publish(ctxT(t), request(t, "shop.carts", dynamicMessage(t, set, "shop.v1.CartUpdated", `{"cartId":""}`)))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "cart_id") {
		t.Fatalf("publish breaking the pushed constraint: %v, want INVALID_ARGUMENT naming cart_id", err)
	}
}

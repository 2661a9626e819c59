package bridge_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/heraldhq/herald/bridge"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
)

func filtered(expr string) string { return "filter=" + url.QueryEscape(expr) }

// A filtered subscription gets exactly the events its expression accepts,
// over typed payloads (protobuf names, enums by name), Struct payloads,
// type, topic and attributes; live and replayed alike.
func TestFilters(t *testing.T) {
	s := startServer(t, serverOpts{})
	big := s.subscribe(t, "topic=orders.>&"+filtered(`payload.total_cents > 10000 && payload.currency == "EUR"`), nil)
	web := s.subscribe(t, "topic=orders.>&"+filtered(`payload.channel == "CHANNEL_WEB"`), nil)
	eu := s.subscribe(t, "topic=>&"+filtered(`topic.startsWith("orders.eu") || payload.region == "eu"`), nil)
	attr := s.subscribe(t, "topic=>&"+filtered(`"source" in attributes && attributes["source"] == "checkout"`), nil)
	all := s.subscribe(t, "topic=orders.>", nil)
	for _, st := range []*stream{big, web, eu, attr, all} {
		if st.resp.StatusCode != 200 {
			t.Fatalf("a filtered subscription: %d", st.resp.StatusCode)
		}
	}

	o := func(id string, cents int64, cur string, ch ordersv1.Channel) *ordersv1.OrderPlaced {
		return &ordersv1.OrderPlaced{OrderId: id, TotalCents: cents, Currency: cur, Channel: ch}
	}
	a := s.publish(t, "orders.eu", o("a", 20000, "EUR", ordersv1.Channel_CHANNEL_WEB))
	b := s.publish(t, "orders.us", o("b", 20000, "USD", ordersv1.Channel_CHANNEL_STORE))
	c := s.publish(t, "orders.eu", o("c", 500, "EUR", ordersv1.Channel_CHANNEL_WEB))
	stats, err := structpb.NewStruct(map[string]any{"region": "eu", "players": 3})
	if err != nil {
		t.Fatal(err)
	}
	d := s.publish(t, "monitoring.game-1", stats)
	req := request(t, "orders.us", o("e", 1, "EUR", ordersv1.Channel_CHANNEL_STORE))
	req.Attributes = map[string]string{"source": "checkout"}
	e, err := s.client.Publish(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}

	ids := func(st *stream, n int) []string {
		var out []string
		for range n {
			out = append(out, st.next(t).LastEventID)
		}
		return out
	}
	for name, tc := range map[string]struct {
		st   *stream
		want []string
	}{
		"total and currency": {big, []string{a}},
		"enum by name":       {web, []string{a, c}},
		"topic or Struct":    {eu, []string{a, c, d}},
		"attributes":         {attr, []string{e.GetId()}},
		"no filter":          {all, []string{a, b, c, e.GetId()}},
	} {
		if got := ids(tc.st, len(tc.want)); strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s: got %v, want %v", name, got, tc.want)
		}
	}
	// The Struct payload has no total_cents: for the first filter that is
	// an error on that event, dropped and counted.
	if n := metricValue(t, s.url, "herald_filter_errors_total"); n < 1 {
		t.Errorf("herald_filter_errors_total = %v, want the Struct event counted", n)
	}

	// A resume is filtered too, and a filtered stream's ids resume exactly.
	replay := s.subscribe(t, "topic=orders.>&last_event_id="+a+"&"+filtered(`payload.channel == "CHANNEL_WEB"`), nil)
	if got := replay.next(t).LastEventID; got != c {
		t.Fatalf("filtered resume after %s: first %s, want %s", a, got, c)
	}

	// gRPC Subscribe takes the same filter.
	sub, err := heraldv1.NewSubscriberServiceClient(s.conn).Subscribe(ctxT(t), &heraldv1.SubscribeRequest{
		Topics: []string{"orders.>"}, LastEventId: a, Filter: `payload.currency == "USD"`,
	})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := sub.Recv(); err != nil || m.GetEvent().GetId() != b {
		t.Fatalf("gRPC filtered resume: %v %v, want %s", m, err, b)
	}
}

// A filter is checked when the subscription starts: a syntax or type error
// is a 400 (INVALID_ARGUMENT) with the position; so are filters over the
// size limit, or given twice.
func TestFilterErrors(t *testing.T) {
	s := startServer(t, serverOpts{})
	for _, tc := range []struct{ query, want string }{
		{filtered(`payload.total_cents >`), "1:22"},
		{filtered(`payload.total_cents + 1`), "must be a condition"},
		{filtered(`nosuchvar == 1`), "undeclared reference"},
		{filtered(strings.Repeat("a", 1100)), "longer than the limit of 1024"},
		{filtered(`true`) + "&" + filtered(`false`), "filter given 2 times"},
	} {
		r, err := http.Get(s.url + "/v1/events?topic=orders.eu&" + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != 400 || !strings.Contains(string(body), tc.want) {
			t.Errorf("%.60s: %d %s, want 400 naming %q", tc.query, r.StatusCode, body, tc.want)
		}
	}
	sub, err := heraldv1.NewSubscriberServiceClient(s.conn).Subscribe(ctxT(t), &heraldv1.SubscribeRequest{Topics: []string{"a"}, Filter: "payload.x >"})
	if err == nil {
		_, err = sub.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("gRPC Subscribe with a broken filter: %v, want INVALID_ARGUMENT", err)
	}
}

// Deleting a topic's state reaches live subscribers as herald.deleted,
// filtered or not, over SSE and gRPC; it is published with the same grant
// as any event.
func TestDeleteTopicState(t *testing.T) {
	s := startServer(t, serverOpts{})
	sse := s.subscribe(t, "topic=monitoring.>&"+filtered(`payload.region == "eu"`), nil)
	sub, err := heraldv1.NewSubscriberServiceClient(s.conn).Subscribe(ctxT(t), &heraldv1.SubscribeRequest{Topics: []string{"monitoring.>"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Header(); err != nil {
		t.Fatal(err)
	}
	resp, err := s.client.DeleteTopicState(ctxT(t), &heraldv1.DeleteTopicStateRequest{Topic: "monitoring.game-1"})
	if err != nil {
		t.Fatal(err)
	}
	ev := sse.next(t)
	var data struct{ Topic string }
	if ev.Type != "herald.deleted" || ev.LastEventID != resp.GetId() || json.Unmarshal([]byte(ev.Data), &data) != nil || data.Topic != "monitoring.game-1" {
		t.Fatalf("SSE: %q %q %s, want herald.deleted for monitoring.game-1", ev.Type, ev.LastEventID, ev.Data)
	}
	m, err := sub.Recv()
	if err != nil || m.GetDeleted().GetTopic() != "monitoring.game-1" || m.GetDeleted().GetId() != resp.GetId() {
		t.Fatalf("gRPC: %v %v, want a TopicDeleted", m, err)
	}

	// Over REST.
	req, _ := http.NewRequest(http.MethodDelete, s.url+"/v1/topics/monitoring.game-2/state", nil)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || !strings.Contains(string(body), `"id"`) {
		t.Fatalf("DELETE /v1/topics/monitoring.game-2/state: %d %s", r.StatusCode, body)
	}
	if ev := sse.next(t); ev.Type != "herald.deleted" || !strings.Contains(ev.Data, "monitoring.game-2") {
		t.Fatalf("SSE after the REST deletion: %q %s", ev.Type, ev.Data)
	}
}

// Deleting takes a grant to publish to the topic.
func TestDeleteTopicStateTakesAGrant(t *testing.T) {
	k := newKeys(t)
	s := startAuthServer(t, k, bridge.Config{}, nil)
	ctx := withBearer(ctxT(t), k.hs(t, claims{pub: []string{"sandbox.>"}}))
	_, err := s.client.DeleteTopicState(ctx, &heraldv1.DeleteTopicStateRequest{Topic: "monitoring.game-1"})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("deleting a topic the token may not publish to: %v, want PERMISSION_DENIED", err)
	}
	req, _ := http.NewRequest(http.MethodDelete, s.url+"/v1/topics/monitoring.game-1/state", nil)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("REST deletion without a token: %d, want 401", r.StatusCode)
	}
}

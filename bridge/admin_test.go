package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/bridge"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/poll"
)

// adminGet calls an admin REST route and decodes the JSON answer into out
// (when 200), returning the status and the body.
func adminCall(t testing.TB, method, url, token, body string, out proto.Message) (int, string) {
	t.Helper()
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rb)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer realm="herald"`) {
		t.Errorf("%s %s: 401 without an RFC 6750 challenge: %q", method, url, resp.Header.Get("WWW-Authenticate"))
	}
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := protojson.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, b)
		}
	}
	return resp.StatusCode, string(b)
}

// TestAdminNeedsAdmin: every admin route, REST and gRPC, refuses a caller
// without a token (401) and one whose token is not admin (403), with a
// message naming the admin grant; an admin token gets in, and grants
// neither publishing nor subscribing.
func TestAdminNeedsAdmin(t *testing.T) {
	k := newKeys(t)
	s := startAuthServer(t, k, bridge.Config{}, nil)
	admin := k.hs(t, claims{admin: true, subject: "ops"})
	user := k.hs(t, claims{pub: []string{">"}, sub: []string{">"}})
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	routes := []struct{ method, path, body string }{
		{"GET", "/v1/topics", ""},
		{"GET", "/v1/topics?pattern=orders.*", ""},
		{"GET", "/v1/topics/orders.eu/events", ""},
		{"GET", "/v1/nodes", ""},
		{"GET", "/v1/revocations", ""},
		{"POST", "/v1/revocations", `{"subject": "someone", "until": "` + later + `"}`},
	}
	for _, r := range routes {
		code, body := adminCall(t, r.method, s.url+r.path, "", r.body, nil)
		if code != http.StatusUnauthorized || !strings.Contains(body, `\"admin\": true`) {
			t.Errorf("%s %s without a token: %d %s, want 401 naming the admin grant", r.method, r.path, code, body)
		}
		code, body = adminCall(t, r.method, s.url+r.path, user, r.body, nil)
		if code != http.StatusForbidden || !strings.Contains(body, "not admin") {
			t.Errorf("%s %s with a publish and subscribe token: %d %s, want 403", r.method, r.path, code, body)
		}
		code, body = adminCall(t, r.method, s.url+r.path, "garbage", r.body, nil)
		if code != http.StatusUnauthorized || !strings.Contains(body, "well-formed") {
			t.Errorf("%s %s with a malformed token: %d %s, want 401", r.method, r.path, code, body)
		}
		if code, body := adminCall(t, r.method, s.url+r.path, admin, r.body, nil); code != http.StatusOK {
			t.Errorf("%s %s with an admin token: %d %s", r.method, r.path, code, body)
		}
	}

	client := heraldv1.NewAdminServiceClient(s.conn)
	ctx := ctxT(t)
	if _, err := client.ListNodes(ctx, &heraldv1.ListNodesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC ListNodes without a token: %v, want UNAUTHENTICATED", err)
	}
	if _, err := client.ListTopics(withBearer(ctx, user), &heraldv1.ListTopicsRequest{}); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "admin") {
		t.Errorf("gRPC ListTopics with a user token: %v, want PERMISSION_DENIED naming admin", err)
	}
	if _, err := client.ListRevocations(withBearer(ctx, admin), &heraldv1.ListRevocationsRequest{}); err != nil {
		t.Errorf("gRPC ListRevocations with an admin token: %v", err)
	}

	// Admin is no publish or subscribe grant.
	if _, err := s.client.Publish(withBearer(ctx, admin), request(t, "orders.eu", order("1"))); status.Code(err) != codes.PermissionDenied {
		t.Errorf("publish with an admin token: %v, want PERMISSION_DENIED", err)
	}
	st := s.subscribe(t, "topic=orders.eu", http.Header{"Authorization": {"Bearer " + admin}})
	if st.resp.StatusCode != http.StatusForbidden {
		t.Errorf("subscribe with an admin token: %d, want 403", st.resp.StatusCode)
	}
}

// TestAdminTopicsAndHistory: the topics list counts the subscribers of
// each topic and pattern as they come and go, the publishes of the last
// minute, the retained events and the last event; the history pages
// forwards and backwards over the retained events, with their JSON
// payloads; bad parameters are 400s that name the problem.
func TestAdminTopicsAndHistory(t *testing.T) {
	s := startServer(t, serverOpts{cfg: bridge.Config{NodeName: "node-1"}})
	a := s.subscribe(t, "topic=orders.eu", nil)
	s.subscribe(t, "topic=orders.eu", nil)
	s.subscribe(t, "topic=orders.*", nil)
	sub, err := heraldv1.NewSubscriberServiceClient(s.conn).Subscribe(ctxT(t), &heraldv1.SubscribeRequest{Topics: []string{"orders.eu", "chat.lobby"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Header(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 5 {
		ids = append(ids, s.publish(t, "orders.eu", order(fmt.Sprint(i))))
	}
	s.publish(t, "chat.lobby", order("c"))

	topics := func(query string) *heraldv1.ListTopicsResponse {
		t.Helper()
		var resp heraldv1.ListTopicsResponse
		if code, body := adminCall(t, "GET", s.url+"/v1/topics"+query, "", "", &resp); code != http.StatusOK {
			t.Fatalf("GET /v1/topics%s: %d %s", query, code, body)
		}
		return &resp
	}
	find := func(r *heraldv1.ListTopicsResponse, name string) *heraldv1.TopicInfo {
		for _, ti := range r.GetTopics() {
			if ti.GetTopic() == name {
				return ti
			}
		}
		return nil
	}
	r := topics("")
	eu := find(r, "orders.eu")
	if eu == nil || eu.GetSubscribers() != 3 || eu.GetSubscribersByNode()["node-1"] != 3 || eu.GetPattern() ||
		eu.GetPublishedLastMinute() != 5 || eu.GetRetained() != 5 || eu.GetLastEventId() != ids[4] || eu.GetLastEventTime() == nil {
		t.Fatalf("orders.eu in %v: want 3 subscribers on node-1, 5 published and retained, last event %s", r, ids[4])
	}
	if p := find(r, "orders.*"); p == nil || !p.GetPattern() || p.GetSubscribers() != 1 {
		t.Errorf("orders.* in %v: want a pattern with 1 subscriber", r)
	}
	if r.GetTopics()[0].GetTopic() != "orders.eu" || r.GetNodes() != 1 {
		t.Errorf("the busiest topic first, from 1 node: got %v", r)
	}
	if r := topics("?pattern=chat.>"); len(r.GetTopics()) != 1 || r.GetTopics()[0].GetTopic() != "chat.lobby" {
		t.Errorf("pattern=chat.>: %v, want chat.lobby alone", r)
	}
	if r := topics("?limit=1"); len(r.GetTopics()) != 1 || !r.GetMore() {
		t.Errorf("limit=1: %v, want one topic and more", r)
	}
	// The JSON a web page reads: counts are numbers, not strings.
	_, raw := adminCall(t, "GET", s.url+"/v1/topics?pattern=orders.eu", "", "", nil)
	var doc struct {
		Topics []map[string]any `json:"topics"`
	}
	if err := json.Unmarshal([]byte(raw), &doc); err != nil || len(doc.Topics) != 1 {
		t.Fatalf("GET /v1/topics?pattern=orders.eu: %s", raw)
	}
	if n, ok := doc.Topics[0]["subscribers"].(float64); !ok || n != 3 {
		t.Errorf("subscribers in JSON: %#v, want the number 3", doc.Topics[0]["subscribers"])
	}

	a.cancel()
	poll.Until(t, 10*time.Second, "orders.eu to count 2 subscribers", func() bool {
		eu := find(topics(""), "orders.eu")
		return eu != nil && eu.GetSubscribers() == 2
	})

	page := func(query string) *heraldv1.ListTopicEventsResponse {
		t.Helper()
		var resp heraldv1.ListTopicEventsResponse
		if code, body := adminCall(t, "GET", s.url+"/v1/topics/orders.eu/events"+query, "", "", &resp); code != http.StatusOK {
			t.Fatalf("GET events%s: %d %s", query, code, body)
		}
		return &resp
	}
	idsOf := func(r *heraldv1.ListTopicEventsResponse) []string {
		var out []string
		for _, ev := range r.GetEvents() {
			out = append(out, ev.GetId())
		}
		return out
	}
	for _, c := range []struct {
		query string
		want  []string
		more  bool
	}{
		{"", ids, false},
		{"?limit=2", ids[:2], true},
		{"?after=" + ids[1] + "&limit=2", ids[2:4], true},
		{"?after=" + ids[3], ids[4:], false},
		{"?after=" + ids[4], nil, false},
		{"?before=" + ids[4] + "&limit=2", ids[2:4], true},
		{"?before=" + ids[2] + "&limit=5", ids[:2], false},
	} {
		r := page(c.query)
		if got := idsOf(r); fmt.Sprint(got) != fmt.Sprint(c.want) || r.GetMore() != c.more || r.GetRetained() != 5 {
			t.Errorf("events%s: %v more=%v retained=%d, want %v more=%v retained=5", c.query, got, r.GetMore(), r.GetRetained(), c.want, c.more)
		}
	}
	ev := page("?limit=1").GetEvents()[0]
	if ev.GetType() != "orders.v1.OrderPlaced" || ev.GetTime() == nil ||
		ev.GetPayload().GetStructValue().GetFields()["orderId"].GetStringValue() != "0" ||
		ev.GetPayload().GetStructValue().GetFields()["customer"].GetStringValue() != "Zoë 山田" {
		t.Errorf("first event: %v, want the OrderPlaced with orderId 0 as JSON", ev)
	}
	grpcPage, err := heraldv1.NewAdminServiceClient(s.conn).ListTopicEvents(ctxT(t), &heraldv1.ListTopicEventsRequest{Topic: "orders.eu", Before: ids[1]})
	if err != nil || len(grpcPage.GetEvents()) != 1 || grpcPage.GetEvents()[0].GetId() != ids[0] {
		t.Errorf("gRPC ListTopicEvents before %s: %v %v, want the first event", ids[1], grpcPage, err)
	}

	for _, c := range []struct{ path, want string }{
		{"/v1/topics/orders.eu/events?limit=5000", "limit must be 1 to 1000"},
		{"/v1/topics/orders.eu/events?limit=-1", "limit must be 1 to 1000"},
		{"/v1/topics/orders.eu/events?after=nonsense", `after: \"nonsense\" is not an event id`},
		{"/v1/topics/orders.eu/events?after=" + ids[0] + "&before=" + ids[2], "not be used together"},
		{"/v1/topics/orders.eu/events?after=zzz-3", "earlier history"},
		{"/v1/topics/orders..eu/events", "empty token"},
		{"/v1/topics?pattern=orders.>.x", "pattern"},
		{"/v1/topics?limit=1001", "limit must be 1 to 1000"},
	} {
		if code, body := adminCall(t, "GET", s.url+c.path, "", "", nil); code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d %s, want 400 saying %q", c.path, code, body, c.want)
		}
	}
}

// TestAdminNodes: the node lists itself with its version, connections and
// broker health.
func TestAdminNodes(t *testing.T) {
	s := startServer(t, serverOpts{cfg: bridge.Config{NodeName: "alpha", Version: "v9.9.9"}})
	s.subscribe(t, "topic=a", nil)
	s.subscribe(t, "topic=b", nil)
	var resp heraldv1.ListNodesResponse
	if code, body := adminCall(t, "GET", s.url+"/v1/nodes", "", "", &resp); code != http.StatusOK {
		t.Fatalf("GET /v1/nodes: %d %s", code, body)
	}
	if len(resp.GetNodes()) != 1 {
		t.Fatalf("nodes: %v, want one", &resp)
	}
	n := resp.GetNodes()[0]
	if n.GetName() != "alpha" || !n.GetSelf() || n.GetVersion() != "v9.9.9" || n.GetConnections() != 2 || !n.GetBrokerHealthy() || n.GetStarted() == nil || n.GetUptimeSeconds() < 0 {
		t.Errorf("node: %v, want alpha, self, v9.9.9, 2 connections, healthy", n)
	}
}

// TestRevocation: revoking a subject ends its SSE and gRPC streams at
// once, and its tokens are refused until the time given, while other
// subjects' streams go on; the revocation is listed; a bad request names
// what is wrong.
func TestRevocation(t *testing.T) {
	k := newKeys(t)
	s := startAuthServer(t, k, bridge.Config{}, nil)
	admin := k.hs(t, claims{admin: true, subject: "ops"})
	leaky := k.hs(t, claims{sub: []string{"orders.>"}, subject: "leaky"})
	fine := k.hs(t, claims{sub: []string{"orders.>"}, pub: []string{"orders.>"}, subject: "fine"})

	sse := s.subscribe(t, "topic=orders.eu", http.Header{"Authorization": {"Bearer " + leaky}})
	other := s.subscribe(t, "topic=orders.eu", http.Header{"Authorization": {"Bearer " + fine}})
	ctx := ctxT(t)
	grpcSub, err := heraldv1.NewSubscriberServiceClient(s.conn).Subscribe(withBearer(ctx, leaky), &heraldv1.SubscribeRequest{Topics: []string{"orders.eu"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := grpcSub.Header(); err != nil {
		t.Fatal(err)
	}

	pubStream, err := s.client.PublishStream(withBearer(ctx, k.hs(t, claims{pub: []string{"orders.>"}, subject: "leaky"})))
	if err != nil {
		t.Fatal(err)
	}
	if err := pubStream.Send(request(t, "orders.us", order("before"))); err != nil {
		t.Fatal(err)
	}
	if resp, err := pubStream.Recv(); err != nil || resp.GetError() != nil {
		t.Fatalf("PublishStream before the revocation: %v %v", resp, err)
	}

	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	var created heraldv1.CreateRevocationResponse
	if code, body := adminCall(t, "POST", s.url+"/v1/revocations", admin, `{"subject": "leaky", "until": "`+until.Format(time.RFC3339)+`"}`, &created); code != http.StatusOK {
		t.Fatalf("POST /v1/revocations: %d %s", code, body)
	}
	if created.GetRevocation().GetSubject() != "leaky" || !created.GetRevocation().GetUntil().AsTime().Equal(until) {
		t.Errorf("created %v", &created)
	}

	select {
	case <-sse.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked subject's SSE stream did not end")
	}
	if _, err := grpcSub.Recv(); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("the revoked subject's gRPC stream ended with %v, want UNAUTHENTICATED saying revoked", err)
	}
	_ = pubStream.Send(request(t, "orders.us", order("after")))
	if _, err := pubStream.Recv(); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("the revoked subject's PublishStream at its next event: %v, want UNAUTHENTICATED saying revoked", err)
	}
	id := s.publishAs(t, fine, "orders.eu")
	if ev := other.next(t); ev.LastEventID != id {
		t.Errorf("the other subject's stream got %q, want the event %s", ev.LastEventID, id)
	}
	again := s.subscribe(t, "topic=orders.eu", http.Header{"Authorization": {"Bearer " + leaky}})
	if again.resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a revoked subject subscribing again: %d, want 401", again.resp.StatusCode)
	}
	if !strings.Contains(again.resp.Header.Get("WWW-Authenticate"), "revoked until") {
		t.Errorf("its challenge: %q, want the revocation named", again.resp.Header.Get("WWW-Authenticate"))
	}

	var list heraldv1.ListRevocationsResponse
	if code, body := adminCall(t, "GET", s.url+"/v1/revocations", admin, "", &list); code != http.StatusOK || len(list.GetRevocations()) != 1 || list.GetRevocations()[0].GetSubject() != "leaky" {
		t.Errorf("GET /v1/revocations: %d %s, want leaky", code, body)
	}

	// Lifting it lets the subject back in.
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	if code, body := adminCall(t, "POST", s.url+"/v1/revocations", admin, `{"subject": "leaky", "until": "`+past+`"}`, nil); code != http.StatusOK {
		t.Fatalf("lifting: %d %s", code, body)
	}
	if back := s.subscribe(t, "topic=orders.eu", http.Header{"Authorization": {"Bearer " + leaky}}); back.resp.StatusCode != http.StatusOK {
		t.Errorf("after the revocation was lifted: %d, want 200", back.resp.StatusCode)
	}

	for _, c := range []struct{ body, want string }{
		{`{"subject": "x"}`, "until is required"},
		{`{"until": "` + until.Format(time.RFC3339) + `"}`, "subject"},
		{`{"subject": "x", "until": "tomorrow"}`, "Timestamp"},
		{`not json`, ""},
	} {
		if code, body := adminCall(t, "POST", s.url+"/v1/revocations", admin, c.body, nil); code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("POST %s: %d %s, want 400 saying %q", c.body, code, body, c.want)
		}
	}
}

// publishAs publishes an order to topic with token, returning its id.
func (s *testServer) publishAs(t testing.TB, token, topic string) string {
	t.Helper()
	resp, err := s.client.Publish(withBearer(ctxT(t), token), request(t, topic, order("x")))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return resp.GetId()
}

// TestTopicMetricsAreBounded: per-topic metrics cover the busiest topics
// only, the rest added up under topic="other".
func TestTopicMetricsAreBounded(t *testing.T) {
	s := startServer(t, serverOpts{cfg: bridge.Config{MetricTopics: 2}})
	for topic, n := range map[string]int{"t.a": 3, "t.b": 2, "t.c": 1, "t.d": 1} {
		for range n {
			s.subscribe(t, "topic="+topic, nil)
		}
	}
	want := map[string]float64{"t.a": 3, "t.b": 2, "other": 2}
	poll.Until(t, 10*time.Second, "herald_topic_subscribers of t.a, t.b and other", func() bool {
		for topic, n := range want {
			if metricValue(t, s.url, `herald_topic_subscribers{topic="`+topic+`"}`) != n {
				return false
			}
		}
		return true
	})
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := strings.Count(string(b), "\nherald_topic_subscribers{"); n != 3 {
		t.Errorf("%d herald_topic_subscribers series, want 3 (2 topics and other)", n)
	}
}

// unreachable is a broker in an outage, as the admin API sees it.
type unreachable struct{ *memory.Broker }

func (unreachable) Healthy(context.Context) error {
	return fmt.Errorf("%w: broker down", broker.ErrUnavailable)
}

func (unreachable) Presence(context.Context) (map[string][]byte, error) {
	return nil, fmt.Errorf("%w: broker down", broker.ErrUnavailable)
}

// TestAdminDuringOutage: while the broker cannot be read, the node list
// still answers, with this node and its broker error; the topics, whose
// figures would be partial, are a 503.
func TestAdminDuringOutage(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	s := startServer(t, serverOpts{cfg: bridge.Config{Broker: unreachable{b}, NodeName: "lonely"}})
	var nodes heraldv1.ListNodesResponse
	if code, body := adminCall(t, "GET", s.url+"/v1/nodes", "", "", &nodes); code != http.StatusOK {
		t.Fatalf("GET /v1/nodes in an outage: %d %s", code, body)
	}
	if n := nodes.GetNodes(); len(n) != 1 || n[0].GetName() != "lonely" || n[0].GetBrokerHealthy() || !strings.Contains(n[0].GetBrokerError(), "broker down") {
		t.Errorf("nodes in an outage: %v, want lonely, unhealthy, saying why", &nodes)
	}
	if code, body := adminCall(t, "GET", s.url+"/v1/topics", "", "", nil); code != http.StatusServiceUnavailable || !strings.Contains(body, "broker down") {
		t.Errorf("GET /v1/topics in an outage: %d %s, want 503", code, body)
	}
}

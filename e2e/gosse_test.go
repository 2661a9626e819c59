package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
	"github.com/heraldhq/herald/internal/broker/memory"
)

// goStream is a subscription by the go-sse client, which reconnects by
// itself with Last-Event-ID, as a Go service subscribing to Herald would.
type goStream struct {
	events   chan gosse.Event
	mu       sync.Mutex
	requests []http.Header // the headers of every (re)connect
	opened   chan struct{} // a 200 response's headers arrived: the server has subscribed it
	done     chan struct{} // closed when the client gave up; err says why
	err      error
	cancel   context.CancelFunc
}

func subscribeGo(t testing.TB, client *http.Client, url string) *goStream {
	t.Helper()
	var st *goStream
	st = subscribeGoWith(t, client, url, func(ev gosse.Event) { st.events <- ev })
	return st
}

// subscribeGoWith subscribes with the go-sse client and calls onEvent for
// every event, on the client's goroutine.
func subscribeGoWith(t testing.TB, client *http.Client, url string, onEvent func(gosse.Event)) *goStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st := &goStream{events: make(chan gosse.Event, 10000), opened: make(chan struct{}, 100), done: make(chan struct{}), cancel: cancel}
	if client == nil {
		client = &http.Client{Transport: &http.Transport{}}
	}
	rt := client.Transport
	recording := *client
	recording.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		st.mu.Lock()
		st.requests = append(st.requests, r.Header.Clone())
		st.mu.Unlock()
		resp, err := rt.RoundTrip(r)
		if err == nil && resp.StatusCode == http.StatusOK {
			select {
			case st.opened <- struct{}{}:
			default:
			}
		}
		return resp, err
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &gosse.Client{HTTPClient: &recording, Backoff: gosse.Backoff{InitialInterval: 50 * time.Millisecond, MaxRetries: 20}}
	conn := c.NewConnection(req)
	conn.Buffer(nil, 2<<20) // events up to the 1 MiB limit, JSON-escaped
	conn.SubscribeToAll(onEvent)
	go func() {
		st.err = conn.Connect()
		close(st.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-st.done
		if tr, ok := rt.(*http.Transport); ok {
			tr.CloseIdleConnections()
		}
	})
	return st
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (st *goStream) next(t testing.TB) gosse.Event {
	t.Helper()
	select {
	case ev := <-st.events:
		return ev
	case <-st.done:
		t.Fatalf("the go-sse client gave up: %v", st.err)
	case <-time.After(20 * time.Second):
		t.Fatal("no event within 20s")
	}
	return gosse.Event{}
}

func (st *goStream) reqs() []http.Header {
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]http.Header(nil), st.requests...)
}

// checkJSON asserts that data is the JSON form of want.
func checkJSON(t testing.TB, data string, want proto.Message) {
	t.Helper()
	got := want.ProtoReflect().New().Interface()
	if err := protojson.Unmarshal([]byte(data), got); err != nil {
		t.Fatalf("data %.200q is not the JSON of %T: %v", data, want, err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("data = %.300s, want %v", data, want)
	}
}

// TestGoSSEClient runs the go-sse client, with its own reconnect logic,
// against a real server.
func TestGoSSEClient(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "plain", plainConfig, memory.Options{})
	ctx := ctxT(t)
	nasty := "Zoë 山田 🎉 \u2028 a\r\nb\rc\nd\n\ndata: injected\nevent: fake\n\n"

	t.Run("typed events, JSON equal to the payload, non-ASCII", func(t *testing.T) {
		st := subscribeGo(t, nil, h.url()+"/v1/events?topic=go.json")
		st.waitOpen(t)
		ord := &ordersv1.OrderPlaced{OrderId: "o-1", Customer: "Zoë 山田", TotalCents: 4200, Currency: "EUR", Channel: ordersv1.Channel_CHANNEL_WEB}
		msg := &chatv1.ChatMessage{Room: "lobby", Text: nasty}
		st1, _ := structpb.NewStruct(map[string]any{"text": nasty, "n": 1.5, "list": []any{"ü", true}})
		var ids []string
		for _, m := range []proto.Message{ord, msg, st1} {
			id, err := h.publish(ctx, request(t, "go.json", m))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		for i, want := range []proto.Message{ord, msg, st1} {
			ev := st.next(t)
			if ev.LastEventID != ids[i] || ev.Type != string(want.ProtoReflect().Descriptor().FullName()) {
				t.Fatalf("event %d: id %q type %q, want %q %s", i, ev.LastEventID, ev.Type, ids[i], want.ProtoReflect().Descriptor().FullName())
			}
			checkJSON(t, ev.Data, want)
		}
	})

	t.Run("an event exactly at the size limit", func(t *testing.T) {
		st := subscribeGo(t, nil, h.url()+"/v1/events?topic=go.big")
		st.waitOpen(t)
		id, text, _, err := h.publishNearLimit(ctx, "go.big", "é€😀")
		if err != nil {
			t.Fatal(err)
		}
		ev := st.next(t)
		if ev.LastEventID != id {
			t.Fatalf("id %q, want %q", ev.LastEventID, id)
		}
		checkJSON(t, ev.Data, &chatv1.ChatMessage{Room: "big", Text: text})
	})

	t.Run("a burst of 1000 arrives complete and in order", func(t *testing.T) {
		st := subscribeGo(t, nil, h.url()+"/v1/events?topic=go.burst")
		st.waitOpen(t)
		var reqs []*heraldv1.PublishRequest
		for i := range 1000 {
			s, _ := structpb.NewStruct(map[string]any{"i": float64(i)})
			reqs = append(reqs, request(t, "go.burst", s))
		}
		ids, err := h.publishStream(ctx, reqs)
		if err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			ev := st.next(t)
			if ev.LastEventID != id || ev.Data != fmt.Sprintf(`{"i":%d}`, i) {
				t.Fatalf("event %d: %q %q, want %q", i, ev.LastEventID, ev.Data, id)
			}
			if !idRE.MatchString(id) {
				t.Fatalf("id %q is not 1 to 128 CORS-safe ASCII characters", id)
			}
		}
	})

	for how, what := range map[string]string{"outage": "the connection drops", "restart": "the server restarts"} {
		t.Run("after "+what+" it reconnects and gets every missed event exactly once", func(t *testing.T) {
			topic := "go." + how
			st := subscribeGo(t, nil, h.url()+"/v1/events?topic="+topic)
			st.waitOpen(t)
			pub := func(n int) string {
				s, _ := structpb.NewStruct(map[string]any{"n": float64(n)})
				id, err := h.publish(ctx, request(t, topic, s))
				if err != nil {
					t.Fatal(err)
				}
				return id
			}
			want := []string{pub(0), pub(1)}
			for _, id := range want {
				if ev := st.next(t); ev.LastEventID != id {
					t.Fatalf("got %q, want %q", ev.LastEventID, id)
				}
			}
			disrupt := h.outage
			if how == "restart" {
				disrupt = h.restart
			}
			var missed []string
			if err := disrupt(func() error {
				for n := 2; n < 7; n++ {
					missed = append(missed, pub(n))
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			for _, id := range missed {
				if ev := st.next(t); ev.LastEventID != id {
					t.Fatalf("after the %s got %q, want %q", how, ev.LastEventID, id)
				}
			}
			live := pub(7)
			if ev := st.next(t); ev.LastEventID != live {
				t.Fatalf("got %q, want the live event %q: nothing may repeat", ev.LastEventID, live)
			}
			reqs := st.reqs()
			if len(reqs) < 2 || reqs[0].Get("Last-Event-ID") != "" || reqs[1].Get("Last-Event-ID") != want[1] {
				t.Fatalf("Last-Event-ID of the (re)connects: %v, want none then %q", lastIDs(reqs), want[1])
			}
		})
	}

	t.Run("a refused subscription is final: no retry", func(t *testing.T) {
		for _, path := range []string{"/v1/nothing?topic=a", "/v1/events", "/v1/events?topic=a..b"} {
			st := subscribeGo(t, nil, h.url()+path)
			select {
			case <-st.done:
				var ce *gosse.ConnectionError
				if !errors.As(st.err, &ce) || !strings.Contains(ce.Reason, "validation") {
					t.Fatalf("%s: Connect = %v, want a response validation error", path, st.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: the client is still trying", path)
			}
			if n := len(st.reqs()); n != 1 {
				t.Fatalf("%s: %d requests, want 1", path, n)
			}
		}
	})
}

func lastIDs(reqs []http.Header) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.Get("Last-Event-ID"))
	}
	return out
}

// waitOpen waits until the stream is open: Herald subscribes a stream
// before it sends the headers, so what is published next is live for it.
func (st *goStream) waitOpen(t testing.TB) {
	t.Helper()
	select {
	case <-st.opened:
	case <-st.done:
		t.Fatalf("the go-sse client gave up: %v", st.err)
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not open within 10s")
	}
}

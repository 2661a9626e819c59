package bridge_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heraldhq/herald/bridge"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/memory"
	"github.com/heraldhq/herald/internal/schema"
)

func TestShutdownBeforeServe(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	types, _ := schema.NewBuiltin()
	srv, err := bridge.New(bridge.Config{Broker: b, Types: types})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown of a server that never served: %v", err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(hl, gl); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Serve after Shutdown = %v, want ErrClosed", err)
	}
}

// unreadable is a broker whose history cannot be read, as in an outage.
type unreadable struct{ *memory.Broker }

func (unreadable) Replay(context.Context, []broker.Pattern, broker.EventID) (broker.ReplayResult, error) {
	return broker.ReplayResult{}, fmt.Errorf("%w: broker down", broker.ErrUnavailable)
}

// A resume whose history cannot be read must not claim a gap (which
// would move the client past what it missed): the client retries.
func TestResumeDuringOutageRetriesInsteadOfSkipping(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	s := startServer(t, serverOpts{cfg: bridge.Config{Broker: unreadable{b}, RetryInterval: 250 * time.Millisecond}})
	resp, err := http.DefaultClient.Do(func() *http.Request {
		r, _ := http.NewRequest("GET", s.url+"/v1/events?topic=a", nil)
		r.Header.Set("Last-Event-ID", b.Epoch()+"-3")
		return r
	}())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body) // the server ends the stream
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "retry: ") || strings.Contains(string(body), bridge.GapEventType) || strings.Contains(string(body), "data:") {
		t.Fatalf("%d %q: want a retry hint and the stream closed, no gap", resp.StatusCode, body)
	}
	// The hint is spread between one and two retry intervals, so that the
	// clients of an outage do not all come back at once.
	var ms int
	if _, err := fmt.Sscanf(string(body), "retry: %d", &ms); err != nil || ms < 250 || ms > 500 {
		t.Fatalf("%q: want a retry between 250 and 500 ms", body)
	}
	sub, err := heraldv1.NewSubscriberServiceClient(s.conn).Subscribe(ctxT(t), &heraldv1.SubscribeRequest{Topics: []string{"a"}, LastEventId: b.Epoch() + "-3"})
	if err == nil {
		_, err = sub.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("gRPC resume during an outage: %v, want UNAVAILABLE", err)
	}
}

// unsubscribable is a broker that cannot be subscribed to while down is
// set, as in an outage, and counts the tries.
type unsubscribable struct {
	*memory.Broker
	down  atomic.Bool
	tries atomic.Int32
}

func (b *unsubscribable) Subscribe(ctx context.Context, deliver func(*broker.Event)) error {
	b.tries.Add(1)
	if b.down.Load() {
		return fmt.Errorf("%w: broker down", broker.ErrUnavailable)
	}
	return b.Broker.Subscribe(ctx, deliver)
}

// A node subscribes to the broker with its first subscriber. While it
// cannot, its would-be first subscribers are sent away to reconnect (SSE)
// or told UNAVAILABLE (gRPC), and within a second of a failed try they are
// answered without another one; once the broker is back, the next
// subscriber subscribes the node and gets its events.
func TestFirstSubscriberWhileBrokerUnsubscribable(t *testing.T) {
	b := &unsubscribable{Broker: memory.New(memory.Options{})}
	defer b.Close()
	b.down.Store(true)
	restore := bridge.SetFollowRetry(time.Hour) // every try below is within the window
	defer restore()
	s := startServer(t, serverOpts{cfg: bridge.Config{Broker: b, RetryInterval: 250 * time.Millisecond}})
	tries := b.tries.Load() // a server subscribes to nothing until its first subscriber
	if tries != 0 {
		t.Fatalf("a server without subscribers tried to subscribe to the broker %d times", tries)
	}
	for i := range 3 {
		resp, err := http.Get(s.url + "/v1/events?topic=down.a")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), ": broker unavailable, reconnecting\n") || !strings.Contains(string(body), "retry: ") || strings.Contains(string(body), "data:") {
			t.Fatalf("subscriber %d while the broker is down: %d %q; want 200, the broker named, a retry hint and the stream closed", i, resp.StatusCode, body)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := heraldv1.NewSubscriberServiceClient(s.conn).Subscribe(ctx, &heraldv1.SubscribeRequest{Topics: []string{"down.a"}})
	if err == nil {
		_, err = sub.Recv()
	}
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "cannot subscribe this node to the broker") {
		t.Fatalf("gRPC subscriber while the broker is down: %v; want UNAVAILABLE naming the broker", err)
	}
	if n := b.tries.Load(); n != 1 {
		t.Fatalf("four subscribers within the retry window made %d tries to subscribe; want 1", n)
	}

	b.down.Store(false)
	bridge.SetFollowRetry(0)
	resp, err := http.Get(s.url + "/v1/events?topic=down.a")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("subscriber once the broker is back: %d", resp.StatusCode)
	}
	id := s.publish(t, "down.a", order("ord-back"))
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		if lines.Text() == "id: "+id {
			return
		}
	}
	t.Fatalf("the subscriber once the broker is back never got event %s: %v", id, lines.Err())
}

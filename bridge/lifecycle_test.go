package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
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

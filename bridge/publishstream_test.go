package bridge_test

import (
	"log/slog"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/heraldhq/herald/bridge"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/jetstream"
	"github.com/heraldhq/herald/internal/broker/jetstream/jstest"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// TestPublishStreamWindowAnswersInOrder: a publisher that sends hundreds
// of events without reading an answer, through a node on JetStream (which
// pipelines appends), gets one answer per request in request order: an
// error where the event was bad, an id elsewhere, ids increasing per topic
// in request order; and every id it was given names its event in the log
// by the time the answer arrives.
func TestPublishStreamWindowAnswersInOrder(t *testing.T) {
	nats := jstest.Start(t)
	js, err := jetstream.New(ctxT(t), jetstream.Options{URL: nats.URL(), Prefix: "window", Timeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { js.Close() })
	s := heraldtest.Start(t, heraldtest.Options{Config: bridge.Config{Broker: js}})
	client := heraldv1.NewPublisherServiceClient(s.Conn)
	ps, err := client.PublishStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	const n = 700 // more than the window
	topics := []string{"orders.a", "orders.b", "orders.c"}
	bad := func(i int) bool { return i%97 == 5 }
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			r := request(t, topics[i%len(topics)], order(strconv.Itoa(i)))
			if bad(i) {
				r.Payload.TypeUrl = "type.googleapis.com/nobody.v1.Knows"
			}
			if err := ps.Send(r); err != nil {
				sent <- err
				return
			}
		}
		sent <- ps.CloseSend()
	}()
	last := make(map[string]uint64)
	for i := range n {
		resp, err := ps.Recv()
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		topic := topics[i%len(topics)]
		if bad(i) {
			if e := resp.GetError(); e == nil || codes.Code(e.GetCode()) != codes.InvalidArgument {
				t.Fatalf("answer %d, to a bad event: %v; want INVALID_ARGUMENT", i, resp)
			}
			continue
		}
		id, ok := broker.ParseEventID(resp.GetId())
		if !ok || resp.GetError() != nil {
			t.Fatalf("answer %d: %v; want an id", i, resp)
		}
		if id.Seq <= last[topic] {
			t.Fatalf("answer %d (%s): Seq %d after Seq %d: not in request order", i, topic, id.Seq, last[topic])
		}
		last[topic] = id.Seq
		if i%50 == 0 {
			// Answered only once accepted: the event is in the log now.
			pattern, err := broker.ParsePattern(topic)
			if err != nil {
				t.Fatal(err)
			}
			res, err := js.Replay(ctxT(t), []broker.Pattern{pattern}, broker.EventID{Epoch: id.Epoch, Seq: id.Seq - 1})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Events) == 0 || res.Events[0].Seq != id.Seq {
				t.Fatalf("answer %d named Seq %d, but the log holds %d events of %s after Seq %d", i, id.Seq, len(res.Events), topic, id.Seq-1)
			}
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Recv(); err == nil {
		t.Fatal("an answer more than the requests")
	}
}

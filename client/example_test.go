package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc/status"

	"github.com/heraldhq/herald/bridge"
	"github.com/heraldhq/herald/client"
	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	monitoringv1 "github.com/heraldhq/herald/gen/monitoring/v1"
	ordersv1 "github.com/heraldhq/herald/gen/orders/v1"
	"github.com/heraldhq/herald/internal/broker/memory"
)

// heraldAddr is the gRPC address of the Herald the examples use: in your
// code, something like "localhost:9090". Here it is a real server that
// TestMain starts in-process.
var heraldAddr string

func TestMain(m *testing.M) {
	h, stop, err := serve(bridge.Config{}, memory.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting Herald for the examples:", err)
		os.Exit(1)
	}
	heraldAddr = h.addr
	code := m.Run()
	if err := stop(); err != nil && code == 0 {
		fmt.Fprintln(os.Stderr, "stopping Herald:", err)
		code = 1
	}
	os.Exit(code)
}

// Publish two events, then read them back as a backend subscriber would,
// resuming after the first.
func Example() {
	ctx := context.Background()
	c, err := client.New(heraldAddr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	var ids []string
	for _, o := range []*ordersv1.OrderPlaced{
		{OrderId: "o-1", Customer: "Ada Lovelace", TotalCents: 4200, Currency: "EUR"},
		{OrderId: "o-2", Customer: "Grace Hopper", TotalCents: 990, Currency: "EUR"},
	} {
		id, err := c.Publish(ctx, "orders.eu", o)
		if err != nil {
			log.Fatal(err)
		}
		ids = append(ids, id)
		fmt.Println("published", o.GetOrderId())
	}

	// Resuming after an id replays what came after it, then goes on live
	// until the loop breaks or ctx ends.
	for ev, err := range c.Subscribe(ctx, []string{"orders.>"}, client.WithLastEventID(ids[0])) {
		if err != nil {
			log.Fatal(err)
		}
		o := ev.Payload.(*ordersv1.OrderPlaced)
		fmt.Println("received", ev.Type, "on", ev.Topic+":", o.GetOrderId(), o.GetCustomer(), o.GetTotalCents(), o.GetCurrency())
		fmt.Println("same id:", ev.ID == ids[1])
		break
	}
	// Output:
	// published o-1
	// published o-2
	// received orders.v1.OrderPlaced on orders.eu: o-2 Grace Hopper 990 EUR
	// same id: true
}

func ExampleClient_Publish() {
	ctx := context.Background()
	c, err := client.New(heraldAddr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	order := &ordersv1.OrderPlaced{OrderId: "o-2", Customer: "Grace Hopper", TotalCents: 990, Currency: "USD"}
	opts := []client.PublishOption{
		client.WithIdempotencyKey("order-o-2"),
		client.WithAttributes(map[string]string{"source": "checkout"}),
	}
	id, err := c.Publish(ctx, "orders.us", order, opts...)
	if err != nil {
		log.Fatal(err)
	}

	// Publishing the same event again with the same key (a retry after a
	// timeout, a restarted job) creates nothing and returns the first id.
	// The key is this publisher's; reusing it for another event within the
	// window is refused with ALREADY_EXISTS.
	again, err := c.Publish(ctx, "orders.us", order, opts...)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("same id:", again == id)
	// Output: same id: true
}

func ExampleClient_NewStreamPublisher() {
	ctx := context.Background()
	c, err := client.New(heraldAddr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	p, err := c.NewStreamPublisher(ctx, client.MaxInFlight(200))
	if err != nil {
		log.Fatal(err)
	}
	var results []*client.Result
	for i := range 1000 {
		stats := &monitoringv1.ServerStats{ServerId: "game-1", Region: "eu", OnlinePlayers: int32(i % 64), MaxPlayers: 64}
		// Blocks while 200 events are unacknowledged.
		r, err := p.Publish(ctx, "monitoring.eu.game-1", stats)
		if err != nil {
			log.Fatal(err) // ctx ended, or p is closed
		}
		results = append(results, r)
	}
	// Close delivers what is pending (reconnecting if it must) and waits.
	if err := p.Close(); err != nil {
		log.Fatal(err)
	}
	failed := 0
	for _, r := range results {
		if r.Err() != nil {
			failed++
		}
	}
	fmt.Printf("published %d events, %d failed\n", len(results), failed)
	// Output: published 1000 events, 0 failed
}

// Instead of keeping Results, handle each one as it resolves.
func ExampleOnResult() {
	ctx := context.Background()
	c, err := client.New(heraldAddr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	acked, failed := 0, 0
	p, err := c.NewStreamPublisher(ctx, client.OnResult(func(r *client.Result) {
		// In publish order, on the publisher's goroutine.
		if err := r.Err(); err != nil {
			failed++
			log.Printf("event %s on %s failed: %v", r.IdempotencyKey(), r.Topic(), err)
			return
		}
		acked++
	}))
	if err != nil {
		log.Fatal(err)
	}
	for i := range 100 {
		if _, err := p.Publish(ctx, "chat.rooms.dev", &chatv1.ChatMessage{Room: "dev", Text: fmt.Sprint("line ", i)}); err != nil {
			log.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(acked, "acknowledged,", failed, "failed")
	// Output: 100 acknowledged, 0 failed
}

func ExampleClient_Subscribe() {
	ctx := context.Background()
	c, err := client.New(heraldAddr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Some chat messages; the first id marks where the subscription starts.
	start, err := c.Publish(ctx, "chat.rooms.lobby", &chatv1.ChatMessage{Room: "lobby", Author: "ada", Text: "first"})
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range []*chatv1.ChatMessage{
		{Room: "lobby", Author: "grace", Text: "hello"},
		{Room: "lobby", Author: "zoë", Text: "héllo 👋"},
	} {
		if _, err := c.Publish(ctx, "chat.rooms."+m.GetRoom(), m); err != nil {
			log.Fatal(err)
		}
	}

	// Events after start, then live ones: the loop runs until it breaks
	// or ctx ends, resuming by itself if the connection drops.
	n := 0
	for ev, err := range c.Subscribe(ctx, []string{"chat.rooms.*"}, client.WithLastEventID(start)) {
		if err != nil {
			log.Fatal(err)
		}
		msg := ev.Payload.(*chatv1.ChatMessage)
		fmt.Printf("%s %s: %s\n", ev.Topic, msg.GetAuthor(), msg.GetText())
		if n++; n == 2 {
			break
		}
	}
	// Output:
	// chat.rooms.lobby grace: hello
	// chat.rooms.lobby zoë: héllo 👋
}

// Resuming from an id the server's history no longer reaches (here one
// saved before the server restarted) yields a *GapError first, then the
// events still retained.
func ExampleGapError() {
	ctx := context.Background()
	c, err := client.New(heraldAddr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Publish(ctx, "orders.jp", &ordersv1.OrderPlaced{OrderId: "o-7"}); err != nil {
		log.Fatal(err)
	}

	saved := "zzzzzzzz-42" // the last id seen, persisted by an earlier run
	for ev, err := range c.Subscribe(ctx, []string{"orders.jp"}, client.WithLastEventID(saved)) {
		var gap *client.GapError
		if errors.As(err, &gap) {
			fmt.Println("gap:", gap.Reason)
			// Rebuild what you derive from the events, then go on.
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("order", ev.Payload.(*ordersv1.OrderPlaced).GetOrderId())
		break
	}
	// Output:
	// gap: this id belongs to an earlier history that is no longer available
	// order o-7
}

// Errors carry a gRPC code. Retry UNAVAILABLE and DEADLINE_EXCEEDED with
// the same idempotency key; the rest are final.
func ExampleRetryable() {
	ctx := context.Background()
	c, err := client.New(heraldAddr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	publish := func(topic string, msg *ordersv1.OrderPlaced) (string, error) {
		key := "order-" + msg.GetOrderId() // the same key for every attempt
		for attempt := 1; ; attempt++ {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			id, err := c.Publish(actx, topic, msg, client.WithIdempotencyKey(key))
			cancel()
			if err == nil || !client.Retryable(err) || attempt == 5 {
				return id, err
			}
			select { // back off, then try again
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
	}

	_, err = publish("orders..eu", &ordersv1.OrderPlaced{OrderId: "o-3"})
	fmt.Println(status.Code(err), client.Retryable(err))
	fmt.Println(status.Convert(err).Message())
	// Output:
	// InvalidArgument false
	// invalid topic: topic "orders..eu" has an empty token (tokens are separated by single dots)
}

package clustertest

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/anypb"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker/redis/redistest"
	"github.com/heraldhq/herald/internal/poll"
)

// A node subscribes to the broker only once it has a subscriber: a node
// that only takes publishes (behind a load balancer for publishers) reads
// nothing back from Redis. Its first subscriber gets what is published
// once its stream is open.
func TestPublishOnlyNodeReadsNothingBack(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	n := startNode(t, "node", "--broker", "redis", "--redis-url", srv.URL())
	opts, err := goredis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := goredis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	xreadCalls := regexp.MustCompile(`cmdstat_xread:calls=(\d+)`)
	// reads is how many XREADs Redis has answered: the node's broker
	// subscription is one XREAD loop on the fan-in stream.
	reads := func() int {
		stats, err := rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		m := xreadCalls.FindStringSubmatch(stats)
		if m == nil {
			return 0
		}
		calls, _ := strconv.Atoi(m[1])
		return calls
	}
	publish := func(text string) {
		t.Helper()
		payload, _ := anypb.New(&chatv1.ChatMessage{Room: "feed", Text: text})
		if _, err := n.client.Publish(ctx, &heraldv1.PublishRequest{Topic: "chat.rooms.feed", Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}

	for i := range 20 {
		publish("before " + strconv.Itoa(i))
	}
	if calls := reads(); calls != 0 {
		t.Fatalf("a node without subscribers made %d XREADs; want none", calls)
	}

	frames := subscribeSSE(t, n.url, "chat.rooms.feed")
	publish("after")
	select {
	case data, ok := <-frames:
		if !ok || !strings.Contains(data, `"text":"after"`) {
			t.Fatalf("the first subscriber got %q (open %v); want the event published after it subscribed", data, ok)
		}
	case <-ctx.Done():
		t.Fatal("the first subscriber got nothing")
	}
	if reads() == 0 {
		t.Fatal("the node delivered an event without reading it from Redis")
	}
}

// A node whose first subscriber comes while Redis is down cannot subscribe
// to it: the stream is sent away to reconnect, as EventSource does by
// itself, not refused; once Redis is back, the next attempt subscribes.
func TestFirstSubscriberWhileBrokerDown(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Durable: true})
	n := startNode(t, "node", "--broker", "redis", "--redis-url", srv.URL())
	srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.url+"/v1/events?topic=chat.rooms.down", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), ": broker unavailable, reconnecting") || !strings.Contains(string(body), "retry: ") {
		t.Fatalf("first subscriber while Redis is down: %s %q; want 200 with a retry and a comment saying the broker is unavailable", resp.Status, body)
	}

	srv.Restart()
	poll.Until(t, 30*time.Second, "a subscriber to be taken once Redis is back", func() bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.url+"/v1/events?topic=chat.rooms.down", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		first, _ := bufio.NewReader(resp.Body).ReadString('\n')
		resp.Body.Close()
		return strings.HasPrefix(first, "retry: ") // not the comment saying the broker is unavailable
	})
	frames := subscribeSSE(t, n.url, "chat.rooms.down")
	payload, _ := anypb.New(&chatv1.ChatMessage{Room: "down", Text: "back"})
	if _, err := n.client.Publish(ctx, &heraldv1.PublishRequest{Topic: "chat.rooms.down", Payload: payload}); err != nil {
		t.Fatal(err)
	}
	select {
	case data := <-frames:
		if !strings.Contains(data, `"text":"back"`) {
			t.Fatalf("got %q; want the event published after Redis came back", data)
		}
	case <-ctx.Done():
		t.Fatal("the subscriber got nothing after Redis came back")
	}
}

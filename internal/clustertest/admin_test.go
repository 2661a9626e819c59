package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"
	gosse "github.com/tmaxmax/go-sse"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker/jetstream/jstest"
	"github.com/heraldhq/herald/internal/broker/redis/redistest"
	"github.com/heraldhq/herald/internal/poll"
)

// adminSecret signs the tokens of TestClusterAdminJetStream.
var adminSecret = []byte("a-cluster-test-secret-of-32-bytes-or-more")

// mint signs a token for subject with the "herald" claim given, with jwx
// directly rather than with Herald's own herald token.
func mint(t *testing.T, subject string, claim map[string]any) string {
	t.Helper()
	tok, err := jwt.NewBuilder().Subject(subject).Expiration(time.Now().Add(time.Hour)).Claim("herald", claim).Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256(), adminSecret))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// sseStream is one open SSE stream: the ids of the events it gets, and a
// channel closed when it ends.
type sseStream struct {
	ids   chan string
	ended chan struct{}
}

func openStream(t *testing.T, ctx context.Context, url, token string) *sseStream {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/events?topic=orders.eu", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("subscribing at %s: %d %s", url, resp.StatusCode, b)
	}
	s := &sseStream{ids: make(chan string, 100), ended: make(chan struct{})}
	go func() {
		defer close(s.ended)
		defer resp.Body.Close()
		for ev, err := range gosse.Read(resp.Body, nil) {
			if err != nil {
				return
			}
			if ev.LastEventID != "" {
				s.ids <- ev.LastEventID
			}
		}
	}()
	return s
}

// topicFigures is what GET /v1/topics says of one topic, as JSON.
type topicFigures struct {
	Topic             string         `json:"topic"`
	Subscribers       int            `json:"subscribers"`
	SubscribersByNode map[string]int `json:"subscribersByNode"`
}

func adminGet(t *testing.T, url, token string, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, b)
	}
}

// ordersEU returns the subscribers of orders.eu as node n sees them.
func ordersEU(t *testing.T, n *node, token string) (int, map[string]int) {
	var resp struct{ Topics []topicFigures }
	adminGet(t, n.url+"/v1/topics?pattern=orders.eu", token, &resp)
	if len(resp.Topics) == 0 {
		return 0, nil
	}
	return resp.Topics[0].Subscribers, resp.Topics[0].SubscribersByNode
}

// TestClusterAdminJetStream: three nodes on one JetStream, with tokens.
// The subscriber counts of the three add up on every node; a revocation
// made on one node ends the revoked subject's streams on all three, and
// only those; a node killed with SIGKILL drops out of the counts and the
// node list of the others once its report expires.
func TestClusterAdminJetStream(t *testing.T) {
	srv := jstest.Start(t)
	runClusterAdmin(t, "--broker", "nats", "--nats-url", srv.URL())
}

// TestClusterAdminRedis is TestClusterAdminJetStream on one Redis.
func TestClusterAdminRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	runClusterAdmin(t, "--broker", "redis", "--redis-url", srv.URL())
}

func runClusterAdmin(t *testing.T, brokerArgs ...string) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, adminSecret, 0o600); err != nil {
		t.Fatal(err)
	}
	var nodes []*node
	for i := range 3 {
		name := fmt.Sprintf("node%d", i)
		args := append([]string{"--auth-hs256-secret-file", secret, "--node-name", name, "--presence-interval", "200ms"}, brokerArgs...)
		nodes = append(nodes, startNodeWith(t, name, args...))
	}
	admin := mint(t, "ops", map[string]any{"admin": true})
	leaky := mint(t, "leaky", map[string]any{"subscribe": []string{"orders.>"}})
	fine := mint(t, "fine", map[string]any{"subscribe": []string{"orders.>"}, "publish": []string{"orders.>"}})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Node i has i+1 streams of the leaky subject and one of the fine.
	var leaked []*sseStream
	var fines []*sseStream
	for i, n := range nodes {
		for range i + 1 {
			leaked = append(leaked, openStream(t, ctx, n.url, leaky))
		}
		fines = append(fines, openStream(t, ctx, n.url, fine))
	}

	want := map[string]int{"node0": 2, "node1": 3, "node2": 4}
	for _, n := range nodes {
		poll.Until(t, 15*time.Second, n.name+" to count 9 subscribers of orders.eu: 2, 3 and 4 by node", func() bool {
			total, by := ordersEU(t, n, admin)
			return total == 9 && fmt.Sprint(by) == fmt.Sprint(want)
		})
	}

	// Revoked on node0: every leaky stream ends, on every node.
	body := `{"subject": "leaky", "until": "` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`
	req, _ := http.NewRequest(http.MethodPost, nodes[0].url+"/v1/revocations", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/revocations: %d %s", resp.StatusCode, b)
	}
	for i, s := range leaked {
		select {
		case <-s.ended:
		case <-time.After(15 * time.Second):
			t.Fatalf("leaky stream %d did not end after the revocation", i)
		}
	}
	// The fine streams go on: an event published now reaches each.
	payload, _ := anypb.New(&chatv1.ChatMessage{Room: "eu", Text: "still here"})
	pub, err := nodes[1].client.Publish(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+fine),
		&heraldv1.PublishRequest{Topic: "orders.eu", Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range fines {
		select {
		case id := <-s.ids:
			if id != pub.GetId() {
				t.Errorf("fine stream on node%d got %s, want %s", i, id, pub.GetId())
			}
		case <-s.ended:
			t.Fatalf("the fine stream on node%d ended with the revocation of another subject", i)
		case <-time.After(15 * time.Second):
			t.Fatalf("the fine stream on node%d got nothing", i)
		}
	}
	// And the subject is refused on every node.
	for _, n := range nodes {
		req, _ := http.NewRequest(http.MethodGet, n.url+"/v1/events?topic=orders.eu", nil)
		req.Header.Set("Authorization", "Bearer "+leaky)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("the revoked subject subscribing on %s: %d, want 401", n.name, resp.StatusCode)
		}
	}

	// node2 dies without a word: its count expires from the others'.
	if err := nodes[2].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = nodes[2].cmd.Wait()
	for _, n := range nodes[:2] {
		poll.Until(t, 15*time.Second, n.name+" to count the fine subscribers of node0 and node1 only", func() bool {
			total, by := ordersEU(t, n, admin)
			return total == 2 && fmt.Sprint(by) == fmt.Sprint(map[string]int{"node0": 1, "node1": 1})
		})
		var list struct {
			Nodes []struct {
				Name          string
				BrokerHealthy bool
			}
		}
		adminGet(t, n.url+"/v1/nodes", admin, &list)
		if len(list.Nodes) != 2 || list.Nodes[0].Name != "node0" || list.Nodes[1].Name != "node1" || !list.Nodes[0].BrokerHealthy {
			t.Errorf("%s lists the nodes %+v, want node0 and node1, healthy", n.name, list.Nodes)
		}
	}
}

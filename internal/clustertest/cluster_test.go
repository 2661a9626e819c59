package clustertest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker/jetstream/jstest"
	"github.com/heraldhq/herald/internal/broker/outagetest"
	"github.com/heraldhq/herald/internal/broker/redis/redistest"
	"github.com/heraldhq/herald/internal/poll"
	"github.com/heraldhq/herald/internal/schema"
	"github.com/heraldhq/herald/internal/schema/schematest"
)

// The herald binary, built once for the whole test process.
var (
	buildOnce sync.Once
	binDir    string
	heraldBin string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func buildHerald(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		if binDir, buildErr = os.MkdirTemp("", "herald-cluster-"); buildErr != nil {
			return
		}
		heraldBin = filepath.Join(binDir, "herald")
		out, err := exec.Command(goTool, "build", "-o", heraldBin, "github.com/heraldhq/herald/cmd/herald").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/herald: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return heraldBin
}

// A backend is the broker the nodes share, and how to take it down.
type backend struct {
	args  []string // herald serve flags that select it
	stop  func()   // stops the broker server; its data survives
	start func()   // starts it again on the same address
}

func TestClusterJetStream(t *testing.T) {
	srv := jstest.Start(t)
	runCluster(t, backend{
		args:  []string{"--broker", "nats", "--nats-url", srv.URL()},
		stop:  srv.Shutdown,
		start: srv.Restart,
	})
}

func TestClusterRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Durable: true}) // every acknowledged write survives a kill
	runCluster(t, backend{
		args:  []string{"--broker", "redis", "--redis-url", srv.URL()},
		stop:  srv.Kill,
		start: srv.Restart,
	})
}

// node is one `herald serve` process.
type node struct {
	name   string
	cmd    *exec.Cmd
	url    string // http://127.0.0.1:port
	client heraldv1.PublisherServiceClient
	logs   *outagetest.Log
	dead   atomic.Bool
}

func startNode(t *testing.T, name string, args ...string) *node {
	t.Helper()
	return startNodeEnv(t, name, nil, args...)
}

// startNodeEnv starts a node in --dev mode with env added to the test's
// environment.
func startNodeEnv(t *testing.T, name string, env []string, args ...string) *node {
	t.Helper()
	return startNodeProcess(t, name, env, append([]string{"--dev"}, args...)...)
}

// startNodeWith starts a node with args and no --dev of its own.
func startNodeWith(t *testing.T, name string, args ...string) *node {
	t.Helper()
	return startNodeProcess(t, name, nil, args...)
}

// startNodeProcess starts a herald serve process with args, and env added
// to the test's environment.
func startNodeProcess(t *testing.T, name string, env []string, args ...string) *node {
	t.Helper()
	// The nodes publish chat.v1.ChatMessage, an example schema that only
	// --demo compiles in.
	chat := schematest.WriteSet(t, t.TempDir(), "chat.binpb", schema.DescriptorSet(chatv1.File_chat_v1_chat_proto))
	args = append([]string{"serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
		"--log-format", "json", "--heartbeat", "500ms", "--broker-timeout", "1s", "--broker-prefix", "cluster",
		"--descriptors", chat}, args...)
	cmd := exec.Command(buildHerald(t), args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...) // the last of a duplicate wins
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &node{name: name, cmd: cmd, logs: &outagetest.Log{}}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stderr)
	var httpAddr, grpcAddr string
	for lines.Scan() {
		n.logs.Write(append(lines.Bytes(), '\n'))
		var rec struct{ Msg, HTTP, GRPC string }
		if json.Unmarshal(lines.Bytes(), &rec) == nil && rec.Msg == "herald listening" {
			httpAddr, grpcAddr = rec.HTTP, rec.GRPC
			break
		}
	}
	if httpAddr == "" {
		t.Fatalf("%s exited before listening: %v\n%s", name, lines.Err(), n.logs)
	}
	go func() { _, _ = io.Copy(n.logs, stderr) }()
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n.url, n.client = "http://"+httpAddr, heraldv1.NewPublisherServiceClient(conn)
	return n
}

type cluster struct {
	nodes []*node
}

// alive returns the first live node from i on, round the ring.
func (c *cluster) alive(i int) int {
	for k := range len(c.nodes) {
		j := (i + k) % len(c.nodes)
		if !c.nodes[j].dead.Load() {
			return j
		}
	}
	return i % len(c.nodes)
}

// subscriber is a browser: an SSE stream read by go-sse's parser, which
// reconnects with Last-Event-ID to another node when its node goes away.
type subscriber struct {
	name   string
	query  string
	rooms  []string
	ready  chan struct{} // closed once first subscribed
	readyO sync.Once

	mu         sync.Mutex
	node       int              // the node it is (re)connecting to
	got        map[string][]int // room → numbers, in arrival order
	lastID     string
	gaps       int
	reconnects int
	bad        []string
}

func (s *subscriber) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, g := range s.got {
		n += len(g)
	}
	return n
}

func (s *subscriber) run(ctx context.Context, c *cluster) {
	for ctx.Err() == nil {
		s.mu.Lock()
		i := c.alive(s.node)
		s.node = i
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.nodes[i].url+"/v1/events?"+s.query, nil)
		if s.lastID != "" {
			req.Header.Set("Last-Event-ID", s.lastID)
		}
		s.mu.Unlock()
		resp, err := http.DefaultClient.Do(req)
		if err == nil && resp.StatusCode == http.StatusOK {
			s.readyO.Do(func() { close(s.ready) })
			s.read(resp.Body)
		}
		if resp != nil {
			resp.Body.Close()
		}
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.reconnects++
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond): // EventSource's retry, shortened
		}
	}
}

func (s *subscriber) read(body io.Reader) {
	for ev, err := range gosse.Read(body, nil) {
		if err != nil {
			return
		}
		s.mu.Lock()
		switch ev.Type {
		case "herald.gap":
			s.gaps++
		case "chat.v1.ChatMessage":
			var m chatv1.ChatMessage
			n, perr := 0, protojson.Unmarshal([]byte(ev.Data), &m)
			if perr == nil {
				n, perr = strconv.Atoi(m.GetText())
			}
			if perr != nil {
				s.bad = append(s.bad, ev.Data)
			} else {
				s.got[m.GetRoom()] = append(s.got[m.GetRoom()], n)
			}
		default:
			s.bad = append(s.bad, ev.Type)
		}
		s.lastID = ev.LastEventID
		s.mu.Unlock()
	}
}

// publisher publishes 1, 2, 3 ... to one room, each number once accepted
// before the next, spreading the calls over the nodes; a failed call is
// retried on another node with the same idempotency key.
type publisher struct {
	room       string
	accepted   atomic.Int64 // numbers accepted so far
	failures   atomic.Int64
	duplicates atomic.Int64 // retries answered with the original's id
}

func (p *publisher) run(ctx context.Context, c *cluster, stop <-chan struct{}, first int) {
	pace := time.NewTicker(3 * time.Millisecond)
	defer pace.Stop()
	for n := 1; ; n++ {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-pace.C:
		}
		payload, _ := anypb.New(&chatv1.ChatMessage{Room: p.room, Text: strconv.Itoa(n)})
		req := &heraldv1.PublishRequest{Topic: "chat.rooms." + p.room, Payload: payload, IdempotencyKey: fmt.Sprintf("%s-%d", p.room, n)}
		target := first + n
		for {
			i := c.alive(target)
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			resp, err := c.nodes[i].client.Publish(cctx, req)
			cancel()
			if err == nil {
				if resp.GetDuplicate() {
					p.duplicates.Add(1)
				}
				break
			}
			if ctx.Err() != nil {
				return
			}
			p.failures.Add(1)
			target = i + 1
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond): // a publisher's retry interval
			}
		}
		p.accepted.Store(int64(n))
	}
}

func runCluster(t *testing.T, be backend) {
	began := time.Now()
	c := &cluster{}
	for i := range 3 {
		c.nodes = append(c.nodes, startNode(t, fmt.Sprintf("node%d", i), be.args...))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	rooms := []string{"r0", "r1", "r2", "r3"}
	var subs []*subscriber
	for i := range c.nodes {
		subs = append(subs,
			&subscriber{name: fmt.Sprintf("node%d/all", i), query: "topic=chat.rooms.>", rooms: rooms, node: i},
			&subscriber{name: fmt.Sprintf("node%d/two", i), query: "topic=chat.rooms.r1&topic=chat.rooms.r2", rooms: []string{"r1", "r2"}, node: i},
		)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, s := range subs {
		s.ready, s.got = make(chan struct{}), make(map[string][]int)
		wg.Go(func() { s.run(ctx, c) })
	}
	for _, s := range subs {
		select {
		case <-s.ready:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s could not subscribe", s.name)
		}
	}

	stop := make(chan struct{})
	var pubs []*publisher
	var pubWG sync.WaitGroup
	for i, r := range rooms {
		p := &publisher{room: r}
		pubs = append(pubs, p)
		pubWG.Go(func() { p.run(ctx, c, stop, i) })
	}
	failures := func() int64 {
		n := int64(0)
		for _, p := range pubs {
			n += p.failures.Load()
		}
		return n
	}
	everyoneHas := func(n int) func() bool {
		return func() bool {
			for _, s := range subs {
				if s.total() < n {
					return false
				}
			}
			return true
		}
	}

	// Phase 1: all nodes up.
	poll.Until(t, 20*time.Second, "every subscriber to receive 100 events", everyoneHas(100))

	// Phase 2: SIGKILL a node mid-stream; its subscribers resume elsewhere.
	killed := c.nodes[0]
	killed.dead.Store(true)
	if err := killed.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = killed.cmd.Wait()
	t.Logf("%v: killed node0 (SIGKILL)", time.Since(began).Round(time.Millisecond))
	poll.Until(t, 20*time.Second, "node0's subscribers to reconnect elsewhere", func() bool {
		for _, s := range subs[:2] {
			s.mu.Lock()
			moved := s.reconnects > 0 && s.node != 0
			s.mu.Unlock()
			if !moved {
				return false
			}
		}
		return true
	})
	base := subs[0].total()
	poll.Until(t, 20*time.Second, "200 more events after the kill", everyoneHas(base+200))

	// Phase 3: restart the broker mid-stream. Publishes fail meanwhile and
	// are retried; open streams stay open.
	before := failures()
	be.stop()
	t.Logf("%v: broker stopped", time.Since(began).Round(time.Millisecond))
	poll.Until(t, 20*time.Second, "publishes to fail while the broker is down", func() bool { return failures() >= before+8 })
	be.start()
	t.Logf("%v: broker started again", time.Since(began).Round(time.Millisecond))
	accepted := func() int64 {
		n := int64(0)
		for _, p := range pubs {
			n += p.accepted.Load()
		}
		return n
	}
	after := accepted()
	poll.Until(t, 30*time.Second, "200 more accepted events after the broker restart", func() bool { return accepted() >= after+200 })
	close(stop)
	pubWG.Wait()
	t.Logf("%v: publishers stopped", time.Since(began).Round(time.Millisecond))

	want := make(map[string]int)
	published := 0
	for _, p := range pubs {
		want[p.room] = int(p.accepted.Load())
		published += want[p.room]
	}
	poll.Until(t, 30*time.Second, "every subscriber to receive every event", func() bool {
		for _, s := range subs {
			s.mu.Lock()
			for _, r := range s.rooms {
				if len(s.got[r]) < want[r] {
					s.mu.Unlock()
					return false
				}
			}
			s.mu.Unlock()
		}
		return true
	})
	cancel()
	wg.Wait()

	delivered, duplicated, lost, outOfOrder, expected := 0, 0, 0, 0, 0
	for _, s := range subs {
		for _, r := range s.rooms {
			got := s.got[r]
			delivered += len(got)
			expected += want[r]
			seen := make(map[int]bool)
			for i, n := range got {
				if seen[n] {
					duplicated++
				}
				seen[n] = true
				if i > 0 && n <= got[i-1] {
					outOfOrder++
				}
			}
			for n := 1; n <= want[r]; n++ {
				if !seen[n] {
					lost++
				}
			}
			if !slices.Equal(got, seq(1, want[r])) && len(got) < 40 {
				t.Logf("%s %s: %v", s.name, r, got)
			}
		}
		if s.gaps > 0 || len(s.bad) > 0 {
			t.Errorf("%s: %d herald.gap events, unexpected events %q", s.name, s.gaps, s.bad)
		}
	}
	var retries, dupAcks int64
	for _, p := range pubs {
		retries += p.failures.Load()
		dupAcks += p.duplicates.Load()
	}
	t.Logf("published %d events to %d topics; %d subscribers expected %d deliveries and got %d: duplicated %d, lost %d, out of order %d; publish calls retried %d (%d answered as duplicates of an accepted first try); took %v",
		published, len(rooms), len(subs), expected, delivered, duplicated, lost, outOfOrder, retries, dupAcks, time.Since(began).Round(time.Millisecond))
	if duplicated != 0 || lost != 0 || outOfOrder != 0 || delivered != expected {
		t.Errorf("delivered %d of %d, duplicated %d, lost %d, out of order %d; want every event exactly once, in order", delivered, expected, duplicated, lost, outOfOrder)
	}
	for _, n := range c.nodes[1:] {
		// Traffic flows again before the health monitor confirms the
		// recovery: give it its check interval to log so.
		poll.Until(t, 20*time.Second, n.name+` to log "broker back"`, func() bool { return n.logs.Count(`"msg":"broker back"`) > 0 })
		if got := n.logs.Count(`"msg":"broker unavailable"`); got != 1 {
			t.Errorf("%s logged \"broker unavailable\" %d times for one broker outage; want once:\n%s", n.name, got, n.logs)
		}
		if got := n.logs.Count(`"msg":"broker back"`); got != 1 {
			t.Errorf("%s logged \"broker back\" %d times for one broker outage; want once:\n%s", n.name, got, n.logs)
		}
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

//go:build faults && linux

package faults

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/internal/poll"
)

// jetStreamCluster starts the NATS cluster and three herald nodes on it,
// with Herald's stream replicated to all three servers.
func jetStreamCluster(t *testing.T) (*natsCluster, *cluster) {
	t.Helper()
	needTopology(t)
	nc := startNATS(t, nil)
	c := startCluster(t, "--broker", "nats", "--nats-url", strings.Join(nc.urls, ","), "--nats-replicas", "3")
	return nc, c
}

// Fault 1: one herald node partitioned from every NATS server for 10 s,
// its subscribers and publishers still reaching it, then healed.
func TestFaultNodePartitionedFromBroker(t *testing.T) {
	_, c := jetStreamCluster(t)
	w := startWorkload(t, c, options{})
	w.readMore(50, 30*time.Second, "every subscriber to read 50 events before the fault")

	w.h.Fault(0)
	partition(t, heraldHost[0], natsHost...)
	hold(10 * time.Second)
	heal(t, heraldHost[0])
	w.h.Heal()

	w.readMore(100, 60*time.Second, "every subscriber to read 100 more events after the heal")
	r := w.finish("h1 partitioned from the broker for 10 s")
	if r.FailFast < 0 {
		t.Errorf("h1 refused no publish while cut off from the broker; want UNAVAILABLE / 503 within %v", brokerTimeout)
	}
	if r.Recovery < 0 {
		t.Errorf("h1 acknowledged no publish after the heal")
	}
}

// Fault 6: one herald node frozen with SIGSTOP for 20 s, then SIGCONT.
// Its streams and calls hang meanwhile; NATS may drop its connection as
// stale.
func TestFaultNodeFrozen(t *testing.T) {
	_, c := jetStreamCluster(t)
	w := startWorkload(t, c, options{})
	w.readMore(50, 30*time.Second, "every subscriber to read 50 events before the fault")

	frozen := c.nodes[1]
	w.h.Fault(1)
	frozen.signal(t, syscall.SIGSTOP)
	hold(20 * time.Second)
	frozen.signal(t, syscall.SIGCONT)
	w.h.Heal()

	w.readMore(100, 60*time.Second, "every subscriber to read 100 more events after SIGCONT")
	r := w.finish("h2 frozen (SIGSTOP) for 20 s")
	if r.Recovery < 0 {
		t.Errorf("h2 acknowledged no publish after SIGCONT")
	}
}

// Fault 3: a bad last mile between one node and its subscribers: 200 ms
// of latency each way and 64 KiB/s downstream for 20 s, with every
// connection reset every 5 s meanwhile (toxiproxy, in process: this
// kernel has no netem).
func TestFaultBadLastMile(t *testing.T) {
	_, c := jetStreamCluster(t)
	px := newToxiproxy(t)
	mile := px.proxy(t, "h3-http", clientHost.ip+":18080", c.nodes[2].httpURL[len("http://"):])
	// Events of 0.6 KiB: at the pace of the publishers, the subscribers to
	// every topic need about 90 KiB/s, more than they get.
	// Its subscribers come over HTTP/1.1 and over h2c, whose writes wait
	// in net/http: each stream whose write the slow mile holds up is left
	// to its own goroutine, and must lose nothing.
	w := startWorkload(t, c, options{via: map[int]string{2: "http://" + clientHost.ip + ":18080"}, pad: 512, h2c: map[int]bool{2: true}})
	w.readMore(50, 30*time.Second, "every subscriber to read 50 events before the fault")

	w.h.Fault(2)
	mile.toxic(t, "latency-down", `{"type":"latency","stream":"downstream","attributes":{"latency":200}}`)
	mile.toxic(t, "latency-up", `{"type":"latency","stream":"upstream","attributes":{"latency":200}}`)
	mile.toxic(t, "bandwidth", `{"type":"bandwidth","stream":"downstream","attributes":{"rate":64}}`)
	for range 4 {
		hold(5 * time.Second)
		mile.reset(t)
	}
	mile.clear(t)
	w.h.Heal()

	w.readMore(100, 60*time.Second, "every subscriber to read 100 more events after the last mile healed")
	w.finish("h3's subscribers behind 200 ms, 64 KiB/s and resets for 20 s")
}

// Fault 4: Redis killed and restarted without persistence: its data is
// gone. As docs/deployment.md says, the nodes refuse the new log
// ("broker log was reset") until restarted; then subscribers resuming
// with old ids get herald.gap, and every event acknowledged but lost with
// Redis's memory must be covered by one.
func TestFaultRedisLosesData(t *testing.T) {
	needTopology(t)
	redis := startRedis(t)
	c := startCluster(t, "--broker", "redis", "--redis-url", "redis://"+redisHost.ip+":6379/0")
	w := startWorkload(t, c, options{})
	w.readMore(50, 30*time.Second, "every subscriber to read 50 events before the fault")

	w.h.Fault(-1)
	redis.kill()
	startRedis(t)
	for _, n := range c.nodes {
		poll.Until(t, 30*time.Second, n.name+` to log "broker log was reset"`, func() bool {
			return n.logs.Count(`broker log was reset`) > 0
		})
	}
	for _, n := range c.nodes { // what an operator does, as the log asks
		n.signal(t, syscall.SIGTERM)
		<-n.exited
		n.start(t)
	}
	w.h.Heal()

	w.readMore(100, 60*time.Second, "every subscriber to read 100 more events after the nodes restarted")
	r := w.finish("Redis restarted empty, then the nodes")
	if r.Gaps == 0 {
		t.Errorf("no subscriber was told of the lost history with herald.gap")
	}
}

// streamLeader returns the index of the NATS server that leads Herald's
// event stream.
func streamLeader(t *testing.T, nc *natsCluster) int {
	t.Helper()
	js, err := jetstream.New(nc.connect(t))
	if err != nil {
		t.Fatal(err)
	}
	var leader string
	poll.Until(t, 20*time.Second, "the stream FAULTS to have a leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "FAULTS")
		if err != nil {
			return false
		}
		if info := s.CachedInfo(); info.Cluster != nil {
			leader = info.Cluster.Leader
		}
		return leader != ""
	})
	for i, h := range natsHost {
		if h.name == leader {
			return i
		}
	}
	t.Fatalf("the stream's leader %q is none of the servers", leader)
	return -1
}

// Fault 2: the NATS server leading Herald's stream partitioned from every
// other host for 10 s: the other two elect a new leader; nodes connected
// to the lost server fail fast until they are back with it.
func TestFaultStreamLeaderPartitioned(t *testing.T) {
	nc, c := jetStreamCluster(t)
	w := startWorkload(t, c, options{})
	w.readMore(50, 30*time.Second, "every subscriber to read 50 events before the fault")

	old := streamLeader(t, nc)
	w.h.Fault(-1)
	isolate(t, natsHost[old])
	var elected int
	poll.Until(t, 20*time.Second, "the others to elect a new stream leader", func() bool {
		// Asked of the servers still reachable: the stream's info names
		// the new leader once elected.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		others := &natsCluster{}
		for i, u := range nc.urls {
			if i != old {
				others.urls = append(others.urls, u)
			}
		}
		nconn, err := nats.Connect(strings.Join(others.urls, ","), nats.Timeout(time.Second))
		if err != nil {
			return false
		}
		defer nconn.Close()
		js, _ := jetstream.New(nconn)
		s, err := js.Stream(ctx, "FAULTS")
		if err != nil || s.CachedInfo().Cluster == nil {
			return false
		}
		l := s.CachedInfo().Cluster.Leader
		for i, h := range natsHost {
			if h.name == l && i != old {
				elected = i
				return true
			}
		}
		return false
	})
	t.Logf("stream leader %s partitioned away; %s elected", natsHost[old].name, natsHost[elected].name)
	hold(10 * time.Second)
	heal(t, natsHost[old])
	w.h.Heal()

	w.readMore(100, 60*time.Second, "every subscriber to read 100 more events after the heal")
	w.finish("the stream leader partitioned away for 10 s")
}

// Fault 7: one node's connections to NATS, which go through toxiproxy,
// reset (TCP RST) again and again for a minute: for 1.5 s in every 3 s,
// every connection that carries data is reset, reconnections included.
func TestFaultBrokerConnectionResets(t *testing.T) {
	needTopology(t)
	nc := startNATS(t, nil)
	px := newToxiproxy(t)
	var proxied []string
	var links []*link
	for i, u := range nc.urls {
		listen := fmt.Sprintf("%s:%d", clientHost.ip, 14221+i)
		links = append(links, px.proxy(t, "nats-"+natsHost[i].name, listen, strings.TrimPrefix(u, "nats://")))
		proxied = append(proxied, "nats://"+listen)
	}
	c := startClusterWith(t, binary("herald"), func(i int) []string {
		urls := nc.urls
		if i == 0 {
			urls = proxied
		}
		return []string{"--broker", "nats", "--nats-url", strings.Join(urls, ","), "--nats-replicas", "3"}
	})
	w := startWorkload(t, c, options{})
	w.readMore(50, 30*time.Second, "every subscriber to read 50 events before the fault")

	w.h.Fault(0)
	for end := time.Now().Add(time.Minute); time.Now().Before(end); {
		var wg sync.WaitGroup
		for _, l := range links {
			wg.Go(func() { l.reset(t) })
		}
		wg.Wait()
		hold(1500 * time.Millisecond)
	}
	w.h.Heal()

	w.readMore(100, 60*time.Second, "every subscriber to read 100 more events after the resets")
	r := w.finish("h1's broker connections reset every 3 s for a minute")
	outageLogged(t, c.nodes[0])
	if r.Recovery < 0 {
		t.Errorf("h1 acknowledged no publish after the resets ended")
	}
}

// Fault 5: JetStream's store on a small file system that fills up: each
// NATS server keeps its store on a 12 MiB tmpfs (while JetStream believes
// it may use 1 GiB), and events of 4 KiB fill it. Once a server's is full
// and publishes are refused, the disks stay full for 10 s, then grow to
// 256 MiB. A NATS server that hit ENOSPC has disabled JetStream ("JetStream
// out of resources, will be DISABLED") and takes it up again only when
// restarted, so the heal is what an operator does: grow the volumes, then
// restart the servers one at a time.
func TestFaultBrokerDiskFull(t *testing.T) {
	needTopology(t)
	var dirs []string
	for range natsHost {
		d := t.TempDir()
		if err := run("mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", d); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = run("umount", "-l", d) })
		dirs = append(dirs, d)
	}
	nc := startNATS(t, dirs)
	c := startCluster(t, "--broker", "nats", "--nats-url", strings.Join(nc.urls, ","), "--nats-replicas", "3")
	w := startWorkload(t, c, options{pad: 4096})
	w.readMore(50, 30*time.Second, "every subscriber to read 50 events before the disks fill")

	free := func(dir string) int64 {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		return int64(st.Bavail) * st.Bsize
	}
	poll.Until(t, 90*time.Second, "a NATS server's store to fill up", func() bool {
		return slices.ContainsFunc(dirs, func(d string) bool { return free(d) < 64<<10 })
	})
	w.h.Fault(-1)
	poll.Until(t, 60*time.Second, "a publish to be refused", func() bool { return w.refusedSince(time.Time{}) })
	hold(10 * time.Second)
	for _, d := range dirs {
		if err := run("mount", "-o", "remount,size=256m", d); err != nil {
			t.Fatal(err)
		}
	}
	w.h.Heal()
	js, err := jetstream.New(nc.connect(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range nc.procs {
		nc.restart(t, i)
		poll.Until(t, 30*time.Second, natsHost[i].name+" to be ready again", func() bool { return nc.procs[i].logs.Count("Server is ready") > 0 })
	}
	poll.Until(t, 60*time.Second, "JetStream to answer after the restarts", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})

	w.readMore(100, 60*time.Second, "every subscriber to read 100 more events after the disks grew")
	w.finish("the NATS servers' disks full")
	outageLogged(t, c.nodes[0])
}

// outageLogged waits for n to log the end of its outage, which comes once
// the broker has answered for two --broker-timeouts, and fails unless
// every outage it logged was logged as ended. It logs the counts, which
// RELIABILITY.md reports.
func outageLogged(t *testing.T, n *heraldNode) {
	t.Helper()
	down := func() int { return n.logs.Count(`"msg":"broker unavailable"`) }
	back := func() int { return n.logs.Count(`"msg":"broker back"`) }
	_ = poll.Wait(20*time.Second, n.name+` to log "broker back"`, func() bool { return back() >= down() })
	t.Logf("%s logged: %d × broker unavailable, %d × broker back", n.name, down(), back())
	if d, b := down(), back(); d != b {
		t.Errorf("%s logged %d × broker unavailable and %d × broker back: an outage it logged never ended", n.name, d, b)
	}
}

// The suite catches a broken Herald: fault 1 against nodes built with
// -tags faultbug (cmd/herald/faultbug.go), which acknowledge a publish
// that the broker refused. The checker must find the events that
// publishers were told were accepted and that no subscriber read.
func TestFaultCatchesAckWithoutBroker(t *testing.T) {
	needTopology(t)
	nc := startNATS(t, nil)
	c := startClusterWith(t, binary("herald-faultbug"), func(int) []string {
		return []string{"--broker", "nats", "--nats-url", strings.Join(nc.urls, ","), "--nats-replicas", "3"}
	})
	w := startWorkload(t, c, options{})
	w.readMore(50, 30*time.Second, "every subscriber to read 50 events before the fault")

	w.h.Fault(0)
	partition(t, heraldHost[0], natsHost...)
	hold(10 * time.Second)
	heal(t, heraldHost[0])
	w.h.Heal()

	w.readMore(100, 60*time.Second, "every subscriber to read 100 more events after the heal")
	r := w.check("a broken build (acknowledges what the broker refused), h1 partitioned from the broker for 10 s", 15*time.Second)
	if r.OK() || r.Lost+r.Phantom == 0 {
		t.Errorf("the checker passed a Herald that acknowledges events the broker refused: %+v", r)
	}
}

package main

// The cluster scenario (issue 18): Herald nodes sharing a real broker,
// NATS JetStream or Redis, which the harness starts on free loopback
// ports. A PublishStream to node 1 publishes as fast as answers come back
// while subscribers on 1, 2 or 3 nodes read; beside it, in the same run, a
// floor client appends the same messages to the same broker, with the same
// acknowledgements and the same window, and nothing else. Herald's
// publishes/s ÷ the floor's is the figure the target is about.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	chatv1 "github.com/heraldhq/herald/gen/chat/v1"
	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/broker/retention"
	"github.com/heraldhq/herald/internal/broker/wire"
)

// clusterTarget is issue 18's: Herald's publishes/s at least this share of
// the floor client's, on the same broker in the same run, for a node that
// only takes publishes. A row with subscribers is reported against the same
// floor, which delivers nothing, and has no verdict.
const clusterTarget = 0.5

// clusterFigures are the cluster scenario's own figures of a result.
type clusterFigures struct {
	Broker string `json:"broker,omitempty"` // nats or redis
	Nodes  int    `json:"nodes,omitempty"`  // Herald nodes; 0 for the floor client
	// The broker process's CPU in the window, apart from the servers'.
	BrokerCores         float64 `json:"brokerCores,omitempty"`
	BrokerCPUPerPublish float64 `json:"brokerCpuMicrosPerPublish,omitempty"`
	Inflight            int     `json:"inflight,omitempty"`
}

// A brokerProc is a NATS or Redis server the harness started.
type brokerProc struct {
	kind string // nats or redis
	url  string
	srv  *server
}

func (p *brokerProc) heraldArgs(prefix string) []string {
	if p.kind == "nats" {
		return []string{"--broker", "nats", "--nats-url", p.url, "--broker-prefix", prefix}
	}
	return []string{"--broker", "redis", "--redis-url", p.url, "--broker-prefix", prefix}
}

// cluster runs the scenario for each --cluster-brokers, --cluster-topics
// and --cluster-nodes, --repeat times.
func (b *bench) cluster() {
	cfg := b.cfg
	nodes, err := positiveInts(cfg.clusterNodes)
	if err != nil {
		b.clusterFailed("cluster", "", fmt.Errorf("--cluster-nodes: %w", err))
		return
	}
	topics, err := positiveInts(cfg.clusterTopics)
	if err != nil {
		b.clusterFailed("cluster", "", fmt.Errorf("--cluster-topics: %w", err))
		return
	}
	for run := 1; run <= cfg.repeat; run++ {
		b.waitQuiet()
		for _, kind := range strings.Split(cfg.clusterBrokers, ",") {
			kind = strings.TrimSpace(kind)
			if kind == "" {
				continue
			}
			n := len(b.results)
			b.clusterOn(kind, topics, nodes)
			for _, r := range b.results[n:] {
				r.Run = run
			}
		}
	}
}

func positiveInts(list string) ([]int, error) {
	var out []int
	for s := range strings.SplitSeq(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad count %q", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func (b *bench) clusterFailed(key, server string, err error) {
	fmt.Fprintf(os.Stderr, "%s %s failed: %v\n", key, server, err)
	b.results = append(b.results, &result{Scenario: key, Title: key, Server: server, Note: err.Error()})
}

// clusterOn runs every variant on one broker, a fresh server of its own
// for the broker kind, each variant on its own stream or keys (prefix).
func (b *bench) clusterOn(kind string, topics, nodes []int) {
	br, err := b.startBroker(kind)
	if errors.Is(err, errNoRedis) {
		fmt.Fprintf(os.Stderr, "cluster: redis skipped: %v\n", err)
		b.results = append(b.results, &result{Scenario: "cluster-redis", Title: "cluster redis", Server: "skipped", Note: err.Error(),
			clusterFigures: clusterFigures{Broker: kind}})
		return
	}
	if err != nil {
		b.clusterFailed("cluster-"+kind, "", err)
		return
	}
	defer br.srv.stop()
	for _, t := range topics {
		key := fmt.Sprintf("cluster-%s-%dt", kind, t)
		title := fmt.Sprintf("10 %s %d topic", kind, t)
		if t > 1 {
			title += "s"
		}
		// herald-p is one node that only takes publishes, the row the
		// target is for; with --cluster-subs 0 every herald-N row is one.
		runs := []string{"floor"}
		if b.cfg.clusterSubs > 0 {
			runs = append(runs, "herald-p")
		}
		for _, n := range nodes {
			runs = append(runs, "herald-"+strconv.Itoa(n))
		}
		for _, server := range runs {
			prefix := fmt.Sprintf("b%d%s", t, strings.ReplaceAll(server, "-", ""))
			fmt.Fprintf(os.Stderr, "%-22s %-8s ...", title, server)
			var r *result
			if server == "floor" {
				r, err = b.runClusterFloor(br, key, prefix, t)
			} else if server == "herald-p" {
				r, err = b.runClusterHerald(br, key, prefix, t, 1, 0, b.heraldBin)
			} else {
				n, _ := strconv.Atoi(strings.TrimPrefix(server, "herald-"))
				r, err = b.runClusterHerald(br, key, prefix, t, n, b.cfg.clusterSubs, b.heraldBin)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, " failed: %v\n", err)
				r = &result{Note: err.Error()}
			} else {
				fmt.Fprintf(os.Stderr, " %s\n", r.brief())
			}
			r.Scenario, r.Title, r.Server, r.Topics = key, title, server, t
			r.Broker, r.Inflight = kind, b.cfg.inflight
			b.results = append(b.results, r)
			if !br.srv.alive() {
				b.clusterFailed(key, "broker", fmt.Errorf("%s exited during the run", kind))
				return
			}
		}
	}
	if kind == "nats" && b.cfg.callers > 0 {
		b.clusterUnary(br)
	}
}

// clusterUnary measures unary Publish from --publish-callers callers on one
// topic against one node on JetStream, with this build and, side by side,
// with --compare-bin if given.
func (b *bench) clusterUnary(br *brokerProc) {
	key, title := "cluster-nats-unary", fmt.Sprintf("10 nats Publish ×%d", b.cfg.callers)
	bins := [][2]string{{"herald", b.heraldBin}}
	if b.cfg.compareBin != "" {
		bins = append(bins, [2]string{"compare", b.cfg.compareBin})
	}
	for _, bin := range bins {
		fmt.Fprintf(os.Stderr, "%-22s %-8s ...", title, bin[0])
		r, err := b.runClusterUnary(br, key, "u"+bin[0], bin[1])
		if err != nil {
			fmt.Fprintf(os.Stderr, " failed: %v\n", err)
			r = &result{Note: err.Error()}
		} else {
			fmt.Fprintf(os.Stderr, " %s\n", r.brief())
		}
		r.Scenario, r.Title, r.Server, r.Topics, r.Broker, r.Nodes = key, title, bin[0], 1, "nats", 1
		b.results = append(b.results, r)
	}
}

var errNoRedis = errors.New("redis-server is not installed (apt-get install redis-server)")

// startBroker starts a NATS server with JetStream, built from the module
// graph (Herald needs 2.12 or newer; distributions ship older ones), or
// Debian's redis-server, on a free loopback port, its files in the run's
// directory. Never the machine's own.
func (b *bench) startBroker(kind string) (*brokerProc, error) {
	dir, err := os.MkdirTemp(b.dir, kind+"-")
	if err != nil {
		return nil, err
	}
	var bin string
	var args []string
	switch kind {
	case "nats":
		bin = b.cfg.natsServer
		if bin == "" {
			bin = filepath.Join(b.dir, "nats-server")
			if _, err := os.Stat(bin); err != nil {
				fmt.Fprintln(os.Stderr, "building nats-server from the module graph ...")
				cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
				cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
				if err := cmd.Run(); err != nil {
					return nil, fmt.Errorf("go build nats-server: %w", err)
				}
			}
		}
		args = []string{"-a", "127.0.0.1", "-js", "-sd", dir}
	case "redis":
		if bin, err = exec.LookPath("redis-server"); err != nil {
			return nil, errNoRedis
		}
		args = []string{"--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no", "--daemonize", "no"}
	default:
		return nil, fmt.Errorf("--cluster-brokers: unknown broker %q (want nats or redis)", kind)
	}
	var lastErr error
	for range 5 {
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		_, port, _ := net.SplitHostPort(addr)
		portArgs := []string{"-p", port}
		url := "nats://" + addr
		if kind == "redis" {
			portArgs[0], url = "--port", "redis://"+addr
		}
		srv, err := startPlain(kind, bin, append(portArgs, args...), filepath.Join(b.dir, kind+".log"), addr)
		if err == nil {
			return &brokerProc{kind: kind, url: url, srv: srv}, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// startPlain runs a server that logs no address of its own and waits until
// addr takes connections (NATS and Redis accept only once they are ready).
func startPlain(kind, bin string, args []string, logPath, addr string) (*server, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	s := &server{kind: kind, cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(s.exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return s, nil
		}
		if !s.alive() || time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s did not listen on %s; see %s", kind, addr, logPath)
		}
		<-time.After(20 * time.Millisecond)
	}
}

// pidsCPU is the CPU time of several processes.
func pidsCPU(pids []int) (sum time.Duration) {
	for _, pid := range pids {
		d, _ := procCPU(pid)
		sum += d
	}
	return sum
}

// startNodes starts n Herald nodes on the broker, one after the other (the
// first creates the stream or keys).
func (b *bench) startNodes(br *brokerProc, key, prefix, bin string, n int) ([]*server, error) {
	saved := b.heraldBin
	b.heraldBin = bin
	defer func() { b.heraldBin = saved }()
	var srvs []*server
	for i := range n {
		srv, err := b.startHerald(fmt.Sprintf("%s-%s-node%d", key, prefix, i+1), br.heraldArgs(prefix)...)
		if err != nil {
			stopAll(srvs)
			return nil, err
		}
		srvs = append(srvs, srv)
	}
	return srvs, nil
}

func stopAll(srvs []*server) {
	var wg sync.WaitGroup
	for _, s := range srvs {
		wg.Add(1)
		go func() { defer wg.Done(); s.stop() }()
	}
	wg.Wait()
}

// runClusterHerald runs n nodes, subs subscribers spread over
// them and over the topics, and a PublishStream to node 1 over the topics
// in turn, as fast as answers come back.
func (b *bench) runClusterHerald(br *brokerProc, key, prefix string, topics, n, subs int, bin string) (*result, error) {
	cfg := b.cfg
	srvs, err := b.startNodes(br, key, prefix, bin, n)
	if err != nil {
		return nil, err
	}
	defer stopAll(srvs)
	names := topicNames(topics)
	win := &window{}
	win.from.Store(1<<63 - 1)
	var conns []*sseConn
	defer func() { closeSSE(conns) }()
	for j, srv := range srvs {
		count := subs / n
		if j < subs%n {
			count++
		}
		if count == 0 {
			continue
		}
		cs, err := openSSE(context.Background(), b.dialer, srv.http, count, cfg.dialParallel,
			func(k int) int { return (j + k*n) % topics }, nil, win)
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", j+1, err)
		}
		conns = append(conns, cs...)
	}
	<-time.After(cfg.settle)
	conn, err := b.dialGRPC(srvs[0].grpc)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	f, err := floodTopics(conn, names, padding(cfg.payload), cfg.inflight)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, s := range srvs {
		pids = append(pids, s.pid)
	}
	r := &result{Conns: len(conns), clusterFigures: clusterFigures{Nodes: n}}
	start := time.Now()
	from := start.Add(cfg.warmup)
	to := from.Add(cfg.duration)
	win.set(from, to)
	waitUntil(from)
	a, n0, ba, ha := snapCPU(0), f.answered.Load(), pidsCPU([]int{br.srv.pid}), pidsCPU(pids)
	profDone := b.profile(srvs[0], key+"-"+prefix, cfg.duration)
	waitUntil(to)
	z, n1, bz, hz := snapCPU(0), f.answered.Load(), pidsCPU([]int{br.srv.pid}), pidsCPU(pids)
	f.halt()
	profDone()
	z.server, a.server = hz, ha
	b.cpu(r, a, z)
	b.brokerCPU(r, ba, bz)
	r.Published = n1 - n0
	r.PublishPerSec = float64(r.Published) / r.Window
	if r.Published > 0 {
		r.CPUPerPublish = r.ServerCPU / float64(r.Published) * 1e6
		r.BrokerCPUPerPublish = (bz - ba).Seconds() / float64(r.Published) * 1e6
	}
	r.Errors = f.errs.Load() + f.refused.Load()
	drainSSE(conns, func(c *sseConn) uint64 { return f.seqs[c.topic] }, cfg.drain)
	r.Ended = ended(conns)
	for i, s := range srvs {
		if !s.alive() {
			return nil, fmt.Errorf("node %d exited during the run", i+1)
		}
	}
	closeSSE(conns)
	var lat []int64
	var gaps int64
	for _, c := range conns {
		r.Deliveries += c.inWindow
		r.Dups += c.dups
		r.Lost += c.gaps
		if c.err == nil {
			r.Lost += int64(f.seqs[c.topic] - c.last.Load())
		}
		lat = append(lat, c.lat...)
		gaps += c.gaps
	}
	conns = nil
	r.DeliveriesPerSec = float64(r.Deliveries) / r.Window
	if r.Deliveries > 0 {
		r.CPUPerDelivery = r.ServerCPU / float64(r.Deliveries) * 1e6
	}
	r.P50, r.P99, r.P999, r.Max = percentiles(lat)
	if r.Lost > 0 {
		// Skipped ones were lost; the others may only be late.
		r.Remark = fmt.Sprintf("lost: %d skipped between two received, %d not received by the end of the drain", gaps, r.Lost-gaps)
	}
	if r.Ended > 0 {
		r.Note = fmt.Sprintf("%d of %d subscribers dropped as too slow (expected when publishing flat out)", r.Ended, r.Conns)
	}
	return r, nil
}

func (b *bench) brokerCPU(r *result, a, z time.Duration) {
	r.BrokerCores = (z - a).Seconds() / r.Window
	// OtherCores counted the broker: it is not the rest of the machine.
	r.OtherCores = max(r.OtherCores-r.BrokerCores, 0)
}

// runClusterUnary runs one node of bin and --publish-callers unary
// Publish callers on one topic.
func (b *bench) runClusterUnary(br *brokerProc, key, prefix, bin string) (*result, error) {
	cfg := b.cfg
	srvs, err := b.startNodes(br, key, prefix, bin, 1)
	if err != nil {
		return nil, err
	}
	defer stopAll(srvs)
	conn, err := b.dialGRPC(srvs[0].grpc)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	r := &result{}
	win := &window{}
	start := time.Now()
	from, to := start.Add(cfg.warmup), start.Add(cfg.warmup+cfg.duration)
	win.set(from, to)
	f := floodUnary(conn, cfg.callers, topicName(0), padding(cfg.payload), win)
	waitUntil(from)
	a, n0, ba := snapCPU(srvs[0].pid), f.answered.Load(), pidsCPU([]int{br.srv.pid})
	profDone := b.profile(srvs[0], key+"-"+prefix, cfg.duration)
	waitUntil(to)
	z, n1, bz := snapCPU(srvs[0].pid), f.answered.Load(), pidsCPU([]int{br.srv.pid})
	f.halt()
	profDone()
	b.cpu(r, a, z)
	b.brokerCPU(r, ba, bz)
	r.Published = n1 - n0
	r.PublishPerSec = float64(r.Published) / r.Window
	if r.Published > 0 {
		r.CPUPerPublish = r.ServerCPU / float64(r.Published) * 1e6
		r.BrokerCPUPerPublish = (bz - ba).Seconds() / float64(r.Published) * 1e6
	}
	r.Errors = f.errs.Load()
	r.P50, r.P99, r.P999, r.Max = percentiles(f.lat)
	return r, nil
}

// A topicFlood publishes on one PublishStream over several topics in turn,
// every event stamped with its topic's next seq, as fast as answers come
// back with up to inflight unanswered. seqs, the last seq sent on each
// topic, may be read once halt returned.
type topicFlood struct {
	flood
	seqs []uint64
}

func floodTopics(conn *grpc.ClientConn, names []string, text string, inflight int) (*topicFlood, error) {
	stream, err := heraldv1.NewPublisherServiceClient(conn).PublishStream(context.Background())
	if err != nil {
		return nil, err
	}
	f := &topicFlood{flood: flood{stop: make(chan struct{})}, seqs: make([]uint64, len(names))}
	sem := make(chan struct{}, inflight)
	recvDone := f.flood.countAnswers(stream, sem)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer func() { _ = stream.CloseSend(); <-recvDone }()
		for i := 0; ; i = (i + 1) % len(names) {
			select {
			case <-f.stop:
				return
			case sem <- struct{}{}:
			}
			req, err := publishRequest(names[i], f.seqs[i]+1, time.Now().UnixNano(), text)
			if err != nil {
				f.errs.Add(1)
				return
			}
			if err := stream.Send(req); err != nil {
				f.errs.Add(1)
				return
			}
			f.seqs[i]++
			f.sent.Add(1)
		}
	}()
	return f, nil
}

// A floorAppender appends events to the broker the way the floor client
// does; appended answers when the broker acknowledged them.
type floorAppender interface {
	// run appends events from next until stop is closed, and returns
	// once every append was answered.
	run(next func() *broker.Event, stop <-chan struct{}) error
	close()
}

// runClusterFloor lets a Herald node create the stream or keys (so that
// the floor appends to a stream configured exactly as Herald's), stops it,
// then appends the events Herald would store, over the topics in turn, as
// fast as the broker acknowledges them with --publish-inflight unanswered.
func (b *bench) runClusterFloor(br *brokerProc, key, prefix string, topics int) (*result, error) {
	cfg := b.cfg
	srvs, err := b.startNodes(br, key, prefix, b.heraldBin, 1)
	if err != nil {
		return nil, err
	}
	stopAll(srvs)
	var app floorAppender
	var answered, errs atomic.Int64
	if br.kind == "nats" {
		app, err = newNATSFloor(br.url, prefix, cfg.inflight, &answered, &errs)
	} else {
		app, err = newRedisFloor(br.url, prefix, cfg.inflight, &answered, &errs)
	}
	if err != nil {
		return nil, err
	}
	defer app.close()
	names := topicNames(topics)
	text := padding(cfg.payload)
	seqs := make([]uint64, topics)
	i := 0
	// The events Herald stores for the harness's publishes: the same
	// payload, built afresh for each, as Herald's publisher sends.
	next := func() *broker.Event {
		topic := i % topics
		i++
		seqs[topic]++
		msg := &chatv1.ChatMessage{Room: names[topic], MessageId: string(messageID(make([]byte, 0, 30), seqs[topic], time.Now().UnixNano())), Author: author, Text: text}
		payload, _ := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
		return &broker.Event{Topic: names[topic], Type: eventType, TypeURL: "type.googleapis.com/" + eventType, Payload: payload}
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- app.run(next, stop) }()
	r := &result{}
	from := time.Now().Add(cfg.warmup)
	to := from.Add(cfg.duration)
	waitUntil(from)
	a, n0 := snapCPU(br.srv.pid), answered.Load()
	waitUntil(to)
	z, n1 := snapCPU(br.srv.pid), answered.Load()
	close(stop)
	if err := <-done; err != nil {
		return nil, err
	}
	b.cpu(r, a, z)
	// The broker is the only server: its CPU is the server's.
	r.BrokerCores = r.ServerCores
	r.Published = n1 - n0
	r.PublishPerSec = float64(r.Published) / r.Window
	if r.Published > 0 {
		r.BrokerCPUPerPublish = r.ServerCPU / float64(r.Published) * 1e6
	}
	r.ServerCPU, r.ServerCores = 0, 0
	r.Errors = errs.Load()
	return r, nil
}

// natsFloor appends with PublishMsgAsync to the stream Herald created:
// each event's wire bytes on its topic's subject, with a Herald-Prev
// header of Herald's size, awaiting every PubAck. It does not chain
// appends with Nats-Expected-Last-Subject-Sequence or batch them: it
// needs no order, and that is what makes it a floor.
type natsFloor struct {
	nc       *nats.Conn
	js       natsjs.JetStream
	subj     string
	inflight int
	answered *atomic.Int64
	errs     *atomic.Int64
}

func newNATSFloor(url, prefix string, inflight int, answered, errs *atomic.Int64) (*natsFloor, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	js, err := natsjs.New(nc, natsjs.WithPublishAsyncMaxPending(4*inflight))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &natsFloor{nc: nc, js: js, subj: prefix + ".ev.", inflight: inflight, answered: answered, errs: errs}, nil
}

func (f *natsFloor) run(next func() *broker.Event, stop <-chan struct{}) error {
	// window holds a token for each unanswered append.
	window := make(chan struct{}, f.inflight)
	acks := make(chan natsjs.PubAckFuture, f.inflight)
	ackDone := make(chan struct{})
	go func() {
		defer close(ackDone)
		for fut := range acks {
			select {
			case <-fut.Ok():
				f.answered.Add(1)
			case <-fut.Err():
				f.errs.Add(1)
			}
			<-window
		}
	}()
	defer func() { close(acks); <-ackDone }()
	var seq uint64 = 1 << 20 // a Herald-Prev of a stream with a million events
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		select {
		case <-stop:
			return nil
		case window <- struct{}{}:
		}
		ev := next()
		ev.Time = time.Now()
		msg := nats.NewMsg(f.subj + ev.Topic)
		msg.Data = wire.Append(make([]byte, 0, wire.Size(ev)), ev)
		msg.Header.Set("Herald-Prev", strconv.FormatUint(seq, 10))
		seq++
		fut, err := f.js.PublishMsgAsync(msg)
		if err != nil {
			return fmt.Errorf("floor: PublishMsgAsync: %w", err)
		}
		acks <- fut
	}
}

func (f *natsFloor) close() { f.nc.Close() }

// redisFloor appends with pipelined XADDs: each event's wire bytes to its
// topic's stream (trimmed to Herald's default retention, approximately)
// and to a fan-in stream (trimmed by age as Herald's), the two writes
// Herald's publish script makes, a pipeline of up to --publish-inflight
// events at a time, every reply awaited. It skips what the script adds:
// the sequence counter, the topic indexes and exact trimming.
type redisFloor struct {
	rdb      *goredis.Client
	prefix   string
	inflight int
	answered *atomic.Int64
	errs     *atomic.Int64
}

func newRedisFloor(url, prefix string, inflight int, answered, errs *atomic.Int64) (*redisFloor, error) {
	opts, err := goredis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	return &redisFloor{rdb: goredis.NewClient(opts), prefix: "{" + prefix + "}:", inflight: inflight, answered: answered, errs: errs}, nil
}

func (f *redisFloor) run(next func() *broker.Event, stop <-chan struct{}) error {
	ctx := context.Background()
	maxLen := int64(retention.DefaultMaxEvents)
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		pipe := f.rdb.Pipeline()
		now := time.Now()
		us := strconv.FormatInt(now.UnixMicro(), 10)
		minID := strconv.FormatInt(now.Add(-time.Minute).UnixMilli(), 10)
		for range f.inflight {
			ev := next()
			data := wire.Append(make([]byte, 0, wire.Size(ev)), ev)
			pipe.XAdd(ctx, &goredis.XAddArgs{Stream: f.prefix + "t:" + ev.Topic, MaxLen: maxLen, Approx: true, Values: []any{"t", us, "e", data}})
			pipe.XAdd(ctx, &goredis.XAddArgs{Stream: f.prefix + "all", MinID: minID, Approx: true, Values: []any{"t", us, "e", data}})
		}
		cmds, err := pipe.Exec(ctx)
		if err != nil && len(cmds) == 0 {
			return fmt.Errorf("floor: redis pipeline: %w", err)
		}
		for i := 0; i+1 < len(cmds); i += 2 {
			if cmds[i].Err() != nil || cmds[i+1].Err() != nil {
				f.errs.Add(1)
			} else {
				f.answered.Add(1)
			}
		}
	}
}

func (f *redisFloor) close() { f.rdb.Close() }

func (r *result) clusterBrief() string {
	if r.Server == "floor" {
		return fmt.Sprintf("%.0f appends/s, broker %.1f µs CPU each", r.PublishPerSec, r.BrokerCPUPerPublish)
	}
	if r.Conns == 0 {
		return fmt.Sprintf("%.0f publishes/s, p99 %s, %.1f µs node CPU each", r.PublishPerSec, ms(r.P99), r.CPUPerPublish)
	}
	return fmt.Sprintf("%.0f publishes/s, %.0f deliveries/s, lost %d, dup %d, %.2f µs node CPU per delivery",
		r.PublishPerSec, r.DeliveriesPerSec, r.Lost, r.Dups, r.CPUPerDelivery)
}

// printCluster prints scenario 10's tables, if it ran.
func (b *bench) printCluster(w io.Writer) {
	var keys []string
	seen := map[string]bool{}
	for _, r := range b.results {
		if strings.HasPrefix(r.Scenario, "cluster") && !seen[r.Scenario] {
			seen[r.Scenario] = true
			keys = append(keys, r.Scenario)
		}
	}
	if len(keys) == 0 {
		return
	}
	fmt.Fprintln(w, "\nCluster (scenario 10): Herald nodes on a broker the harness started, a PublishStream to node 1 over the topics in turn, as fast as")
	fmt.Fprintln(w, "answers come back; subscribers spread over the nodes and topics. floor: a client appending the same events to the same broker, same")
	fmt.Fprintln(w, "acknowledgements and window, nothing else (JetStream: PublishMsgAsync; Redis: pipelined XADD to the topic and fan-in streams).")
	fmt.Fprintf(w, "÷ floor: Herald's publishes/s over the floor's, same run (target ≥ %g× with no subscribers; with subscribers the nodes also deliver,\n", clusterTarget)
	fmt.Fprintln(w, "which the floor does not, and the row is reported). Node CPU: all Herald nodes; broker CPU apart")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tserver\tnodes\tsubs\tpublishes/s\t÷ floor\tverdict\tdeliveries/s\tlost\tdup\tended\tnode CPU/delivery\tnode CPU/publish\tnode cores\tbroker cores\tbroker CPU/publish\tp99\tharness cores\tother cores\terrors\tnote\t")
	for _, key := range keys {
		if strings.HasSuffix(key, "-unary") {
			continue
		}
		floor := b.find(key, "floor")
		var servers []string
		for _, r := range b.results {
			if r.Scenario == key && !slices.Contains(servers, r.Server) {
				servers = append(servers, r.Server)
			}
		}
		for _, server := range servers {
			x := b.find(key, server)
			if x == nil {
				for _, r := range b.results { // failed in every run: show why
					if r.Scenario == key && r.Server == server {
						fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t%s\t\n", r.Title, server, r.Note)
						break
					}
				}
				continue
			}
			vs, verdict := "–", "–"
			if server != "floor" && floor != nil && floor.PublishPerSec > 0 {
				q := x.PublishPerSec / floor.PublishPerSec
				vs, verdict = fmt.Sprintf("%.2f×", q), "met"
				switch {
				case x.Conns > 0:
					verdict = "reported"
				case q < clusterTarget:
					verdict = "MISSED"
				}
				if x.Lost > 0 || x.Dups > 0 {
					verdict += " (but lost/dup)"
				}
			}
			dash := func(v float64, f string) string {
				if server == "floor" || v == 0 {
					return "–"
				}
				return fmt.Sprintf(f, v)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%.2f\t%.1fµs\t%s\t%.2f\t%.2f\t%d\t%s\t\n",
				x.Title, server, x.Nodes, x.Conns, x.PublishPerSec, vs, verdict, dash(x.DeliveriesPerSec, "%.0f"), x.Lost, x.Dups, x.Ended,
				dash(x.CPUPerDelivery, "%.2fµs"), dash(x.CPUPerPublish, "%.1fµs"), dash(x.ServerCores, "%.2f"), x.BrokerCores, x.BrokerCPUPerPublish,
				ms(x.P99), x.HarnessCores, x.OtherCores, x.Errors, x.Note)
		}
	}
	tw.Flush()
	for _, r := range b.results {
		if strings.HasPrefix(r.Scenario, "cluster") && r.Remark != "" {
			fmt.Fprintf(w, "%s %s run %d: %s\n", r.Title, r.Server, r.Run, r.Remark)
		}
	}

	h, c := b.find("cluster-nats-unary", "herald"), b.find("cluster-nats-unary", "compare")
	if h == nil && c == nil {
		return
	}
	fmt.Fprintln(w, "\nUnary Publish on JetStream (scenario 10): one node, concurrent callers on one topic; compare: --compare-bin, same broker, same run")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tserver\tpublishes/s\tcall p50\tcall p99\tnode CPU/publish\tnode cores\tbroker cores\tbroker CPU/publish\tother cores\terrors\t")
	for _, x := range []*result{h, c} {
		if x != nil {
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%.1fµs\t%.2f\t%.2f\t%.1fµs\t%.2f\t%d\t\n", x.Title, x.Server, x.PublishPerSec, ms(x.P50), ms(x.P99),
				x.CPUPerPublish, x.ServerCores, x.BrokerCores, x.BrokerCPUPerPublish, x.OtherCores, x.Errors)
		}
	}
	if h != nil && c != nil {
		fmt.Fprintf(tw, "\therald/compare\t%s\t%s\t%s\t%s\t\t\t%s\t\t\t\n", ratio(h.PublishPerSec, c.PublishPerSec), ratio(h.P50, c.P50), ratio(h.P99, c.P99),
			ratio(h.CPUPerPublish, c.CPUPerPublish), ratio(h.BrokerCPUPerPublish, c.BrokerCPUPerPublish))
	}
	tw.Flush()
}

// Command herald-bench is Herald's load harness (make bench). It starts a
// real Herald server process, opens real SSE connections over loopback,
// publishes paced, stamped events over gRPC, and measures delivery rate,
// publish→receive latency, loss, and the server's CPU per delivery and
// memory per connection. In the same run it measures a floor, a minimal
// reference server doing the same work with nothing but the writes (see
// internal/floor), and reports Herald's costs as ratios to the floor's.
//
// Scenarios (sizes are flags):
//
//	fanout    1 topic, 1,000 subscribers, 100 and 20 events/s, 256-byte payloads
//	firehose  1 topic, 100 subscribers, 1,000 events/s
//	topics    5,000 topics with one subscriber each, 2,000 events/s over them
//	idle      10,000 open SSE connections, heartbeats only: memory per connection
//	publish   Publish with 64 concurrent callers; PublishStream with 0 and 100 subscribers;
//	          PublishStream paced as topics publishes, with 0 subscribers, against the
//	          bare gRPC floor: what a gRPC server pays per message, one at a time
//	slow      1,000 subscribers at 100 events/s beside 50 stalled ones that never read
//	          and also get large events: the healthy ones' latency, the server's memory,
//	          and that exactly the stalled streams are cut
//	filter    1 topic, 1,000 subscribers at 100 events/s: unfiltered, then over 10 distinct
//	          CEL filters, then over 1,000 (every subscriber its own); Herald against itself
//	snapshot  (not run by default) subscribes with snapshot=true over 10,000 retained topics:
//	          time and server CPU per snapshot
//	cluster   (not run by default) Herald nodes on a JetStream or Redis the harness starts:
//	          PublishStream to node 1 over 1 and 100 topics with subscribers on 1, 2 and 3
//	          nodes, against a floor client appending the same events to the same broker;
//	          and unary Publish on JetStream (cluster.go)
//	hostile   (not run by default) requests meant to cost a secured server more than the
//	          client, one kind at a time at a fixed rate: CPU and memory per request,
//	          against a publish without a token, and that each gets its refusal
//	fanout-h2, idle-h2    (not run by default) fanout and idle over HTTPS with HTTP/2,
//	          one connection per subscriber, as browsers connect (h2.go)
//	fanout-h2c, idle-h2c  (not run by default) the same over h2c, 100 streams per
//	          connection, as a proxy forwards them
//
// --publisher rest (or rest-struct) publishes scenarios 1-4 and 8 over REST
// instead of gRPC, against Herald and against a floor that takes the same
// POSTs and writes their bodies as frames.
//
// --peers nchan (the default) also runs scenarios 1-4 against nginx with
// the nchan module, started with a configuration the harness writes (see
// nchan.go), when nginx and Debian's libnginx-mod-nchan are installed; it
// is skipped with a note when they are not.
//
// Run from the module root: go run ./cmd/herald-bench --help.
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

type config struct {
	scenarios        string
	duration         time.Duration
	warmup           time.Duration
	settle           time.Duration
	drain            time.Duration
	heartbeat        time.Duration
	tick             time.Duration
	payload          int
	fanoutSubs       int
	fanoutRates      string
	publisher        string
	filterSubs       int
	filterRate       float64
	filterCounts     string
	snapshotTopics   int
	snapshotSubs     int
	firehoseSubs     int
	firehoseRate     float64
	topics           int
	topicsRate       float64
	idleConns        int
	h2StreamsPerConn int
	h2IdleStreams    int
	callers          int
	publishSubs      int
	inflight         int
	dynamicWindow    bool // gRPC publishers probe the link as grpc-go does by default
	slowSubs         int
	slowRate         float64
	slowStalled      int
	slowBulk         int
	slowBulkSize     int
	slowBulkRate     float64
	slowWriteTimeout time.Duration
	sources          int
	dialParallel     int
	heraldPkg        string
	heraldBin        string
	targetHTTP       string
	targetGRPC       string
	targetPID        int
	serverArgs       string
	serverEnv        string
	noFloor          bool
	repeat           int
	quietBelow       float64
	quietWait        time.Duration
	rawFloor         bool
	grpcFloor        bool
	peers            string
	profileDir       string
	perf             bool
	jsonOut          string
	report           string
	keepLogs         bool

	// Scenario 7 (hostile).
	hostileKindList    string
	hostileRate        float64
	hostileTimeout     time.Duration
	hostileBodyTimeout time.Duration
	hostileSlowLength  int
	hostileJSONDepth   int
	hostileGRPCBytes   int
	hostileFields      int

	// Scenario 10 (cluster).
	clusterBrokers string
	clusterNodes   string
	clusterTopics  string
	clusterSubs    int
	natsServer     string
	compareBin     string
}

type bench struct {
	cfg       config
	dir       string // logs
	heraldBin string
	heraldDev bool   // herald serve has --dev (open access on loopback)
	schemas   string // the payload's schema for herald serve --descriptors (writeSchemas); "" for builds without it
	dialer    *dialer
	peers     []string       // the other servers scenarios 1-4 run: --peers that are present
	certPool  *x509.CertPool // trusts the run's certificate (h2.go); nil until made
	results   []*result
}

func main() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "floor-") {
		if err := runFloor(os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "herald-bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "herald-bench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var c config
	fs := flag.NewFlagSet("herald-bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: herald-bench [flags]\n\nLoad harness for Herald: runs each scenario against a minimal floor server and\nagainst Herald, and prints the figures with Herald's costs as ratios to the floor's.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.scenarios, "scenarios", "fanout,firehose,topics,idle,publish,slow,filter", "scenarios to run, comma-separated: fanout, firehose, topics, idle, publish, slow, filter, snapshot, hostile, cluster (scenario 10, not run by default); and over HTTP/2 (not run by default): fanout-h2 and idle-h2 (TLS, HTTP/2 by ALPN, one connection per subscriber, as browsers), fanout-h2c and idle-h2c (h2c, --h2-streams-per-conn streams per connection, as a proxy)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measurement window of each scenario")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "load before the measurement window")
	fs.DurationVar(&c.settle, "settle", time.Second, "pause after connecting, before reading memory")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "after publishing stops, how long to wait for the last events without any progress (a late server is not a lossy one)")
	fs.DurationVar(&c.heartbeat, "heartbeat", 5*time.Second, "heartbeat interval of Herald (--heartbeat) and the floor")
	fs.DurationVar(&c.tick, "tick", time.Millisecond, "how often the publisher checks its schedule")
	fs.IntVar(&c.payload, "payload", 256, "size of each event's JSON, in bytes")
	fs.IntVar(&c.fanoutSubs, "fanout-subs", 1000, "fanout: subscribers of the one topic")
	fs.StringVar(&c.fanoutRates, "fanout-rates", "100,20", "fanout: event rates to run, events/s, comma-separated")
	fs.StringVar(&c.publisher, "publisher", "grpc", "how scenarios 1-4 and 8 publish: grpc (PublishStream), rest (POST /v1/topics/{topic}/events, the typed message as JSON) or rest-struct (the same fields as a google.protobuf.Struct); the floor takes REST publishes too")
	fs.IntVar(&c.filterSubs, "filter-subs", 1000, "filter: subscribers of the one topic")
	fs.Float64Var(&c.filterRate, "filter-rate", 100, "filter: events/s")
	fs.StringVar(&c.filterCounts, "filter-counts", "10,1000", "filter: numbers of distinct filters to run, comma-separated (subscribers take them in turn)")
	fs.IntVar(&c.snapshotTopics, "snapshot-topics", 10000, "snapshot: topics with a retained event")
	fs.IntVar(&c.snapshotSubs, "snapshot-subs", 20, "snapshot: subscribes with snapshot=true over all of them, one after another")
	fs.IntVar(&c.firehoseSubs, "firehose-subs", 100, "firehose: subscribers of the one topic")
	fs.Float64Var(&c.firehoseRate, "firehose-rate", 1000, "firehose: events/s")
	fs.IntVar(&c.topics, "topics", 5000, "topics: topics, one subscriber each")
	fs.Float64Var(&c.topicsRate, "topics-rate", 2000, "topics: events/s, round-robin over the topics")
	fs.IntVar(&c.idleConns, "idle-conns", 10000, "idle: open SSE connections")
	fs.IntVar(&c.h2StreamsPerConn, "h2-streams-per-conn", 100, "fanout-h2c, idle-h2c: HTTP/2 streams per connection")
	fs.IntVar(&c.h2IdleStreams, "h2-idle-streams", 2000, "idle-h2, idle-h2c: open streams (idle-h2: one connection each)")
	fs.IntVar(&c.callers, "publish-callers", 64, "publish: concurrent unary Publish callers")
	fs.IntVar(&c.publishSubs, "publish-subs", 100, "publish: subscribers in the PublishStream run with subscribers")
	fs.BoolVar(&c.dynamicWindow, "publisher-dynamic-window", false, "dial gRPC publishers with grpc-go's default dynamic flow-control window, which probes the link with a PING for nearly every answer, instead of the fixed 1 MiB window Herald's Go client grants")
	fs.IntVar(&c.inflight, "publish-inflight", 256, "publish: unanswered PublishStream requests allowed")
	fs.IntVar(&c.slowSubs, "slow-subs", 1000, "slow: healthy subscribers of the paced topic")
	fs.Float64Var(&c.slowRate, "slow-rate", 100, "slow: events/s on the paced topic")
	fs.IntVar(&c.slowStalled, "slow-stalled", 50, "slow: subscribers that never read (4 KiB receive buffer), of the paced topic and the bulk one")
	fs.IntVar(&c.slowBulk, "slow-bulk", 40, "slow: large events published to the bulk topic from the window's start")
	fs.IntVar(&c.slowBulkSize, "slow-bulk-size", 256<<10, "slow: size of each bulk event's JSON, in bytes")
	fs.Float64Var(&c.slowBulkRate, "slow-bulk-rate", 10, "slow: bulk events/s")
	fs.DurationVar(&c.slowWriteTimeout, "slow-write-timeout", 3*time.Second, "slow: write timeout of Herald (--write-timeout) and of the floor, after which a stalled stream is cut")
	fs.StringVar(&c.hostileKindList, "hostile-kinds", strings.Join(hostileKeys, ","), "hostile: kinds of request to send, comma-separated: "+strings.Join(hostileKeys, ", "))
	fs.Float64Var(&c.hostileRate, "hostile-rate", 50, "hostile: requests/s of each kind, sent whether or not earlier ones were answered")
	fs.DurationVar(&c.hostileTimeout, "hostile-timeout", 30*time.Second, "hostile: longest wait for the answer to one request")
	fs.DurationVar(&c.hostileBodyTimeout, "hostile-body-timeout", 2*time.Second, "hostile: Herald's --body-read-timeout, if the build has the flag (otherwise its default)")
	fs.IntVar(&c.hostileSlowLength, "hostile-slow-length", 3_000_000, "hostile: Content-Length of the slow bodies of kind slow, within the REST body limit (3 × --max-event-bytes + 64 KiB)")
	fs.IntVar(&c.hostileJSONDepth, "hostile-json-depth", 5000, "hostile: google.protobuf.Any levels of the nested REST payload (60 bytes each)")
	fs.IntVar(&c.hostileGRPCBytes, "hostile-grpc-bytes", 1<<20-1<<10, "hostile: size of the nested binary Any, as deep as fits (about 45 bytes a level); within --max-event-bytes")
	fs.IntVar(&c.hostileFields, "hostile-fields", 32, "hostile: distinct unknown paths in the fields= of the SSE kind")
	fs.StringVar(&c.clusterBrokers, "cluster-brokers", "nats,redis", "cluster: brokers to run on, comma-separated: nats (a nats-server built from the module graph), redis (redis-server on PATH; skipped with a note when absent)")
	fs.StringVar(&c.clusterNodes, "cluster-nodes", "1,2,3", "cluster: numbers of Herald nodes to run, comma-separated")
	fs.StringVar(&c.clusterTopics, "cluster-topics", "1,100", "cluster: numbers of topics to publish over in turn, comma-separated")
	fs.IntVar(&c.clusterSubs, "cluster-subs", 100, "cluster: subscribers, spread over the nodes and the topics (0: the nodes only take publishes, and so read nothing back from the broker)")
	fs.StringVar(&c.natsServer, "nats-server", "", "cluster: nats-server binary (2.12 or newer) instead of building github.com/nats-io/nats-server/v2")
	fs.StringVar(&c.compareBin, "compare-bin", "", "cluster: also run the unary Publish row on JetStream with this herald binary (e.g. an older build), side by side")
	fs.IntVar(&c.sources, "source-addrs", 16, "loopback source addresses to spread connections over (127.0.0.2, ...)")
	fs.IntVar(&c.dialParallel, "dial-parallel", 64, "connections opened at once")
	fs.StringVar(&c.heraldPkg, "herald-pkg", "./cmd/herald", "package to build as the server under test")
	fs.StringVar(&c.heraldBin, "herald-bin", "", "use this herald binary instead of building one")
	fs.StringVar(&c.targetHTTP, "target", "", "measure an already running Herald at this HTTP address instead of starting one (needs --target-grpc; it must know chat.v1.ChatMessage: give it --descriptors of proto/chat/v1/chat.proto)")
	fs.StringVar(&c.targetGRPC, "target-grpc", "", "gRPC address of the --target server")
	fs.IntVar(&c.targetPID, "target-pid", 0, "process id of the --target server, to read its CPU and memory from /proc")
	fs.StringVar(&c.serverArgs, "server-args", "", "extra flags for herald serve, space-separated")
	fs.StringVar(&c.serverEnv, "server-env", "", "extra environment for herald serve, space-separated, e.g. GOMAXPROCS=1")
	fs.BoolVar(&c.noFloor, "no-floor", false, "skip the floor servers")
	fs.IntVar(&c.repeat, "repeat", 1, "run every scenario this many times (floor and Herald alternating); the table shows, per server, the run in which the rest of the machine was least busy")
	fs.Float64Var(&c.quietBelow, "quiet-below", 0, "before each scenario, wait until the rest of the machine uses at most this many cores (0: don't wait)")
	fs.DurationVar(&c.quietWait, "quiet-wait", 5*time.Minute, "longest wait for --quiet-below")
	fs.BoolVar(&c.rawFloor, "raw-floor", true, "also run the raw-socket SSE floor (hijacked connections, no net/http per connection) in scenarios 1-4, for reference")
	fs.BoolVar(&c.grpcFloor, "grpc-floor", true, "also run, in scenario 3 over gRPC, the SSE floor taking its pre-framed events over a grpc-go PublishStream (\"grpc\"), for reference: what the gRPC transport costs apart from the rest")
	fs.StringVar(&c.peers, "peers", "nchan", "other servers to run scenarios 1-4 against, comma-separated, each skipped with a note when not installed: nchan (nginx with Debian's libnginx-mod-nchan); \"\" for none")
	fs.StringVar(&c.profileDir, "profile-dir", "", "write CPU (measurement window) and heap profiles of every server here; Herald runs with --debug-addr")
	fs.BoolVar(&c.perf, "perf", false, "with --profile-dir, also record `perf record -g` of each server over the window")
	fs.StringVar(&c.jsonOut, "json", "", "also write the results to this file as JSON")
	fs.StringVar(&c.report, "report", "", "run nothing: print the tables of the results in this --json file")
	fs.BoolVar(&c.keepLogs, "keep-logs", false, "keep the servers' logs (the directory is printed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.targetHTTP != "" && c.targetGRPC == "" {
		return errors.New("--target needs --target-grpc")
	}
	if c.duration <= 0 || c.payload <= 0 || c.heartbeat <= 0 || c.tick <= 0 || c.repeat <= 0 {
		return errors.New("--duration, --payload, --heartbeat, --tick and --repeat must be positive")
	}
	if c.slowSubs <= 0 || c.slowRate <= 0 || c.slowStalled < 0 || c.slowBulk < 0 || c.slowBulkSize <= 0 || c.slowBulkRate <= 0 || c.slowWriteTimeout <= 0 {
		return errors.New("--slow-subs, --slow-rate, --slow-bulk-size, --slow-bulk-rate and --slow-write-timeout must be positive, --slow-stalled and --slow-bulk not negative")
	}
	if c.hostileRate <= 0 || c.hostileTimeout <= 0 || c.hostileBodyTimeout <= 0 || c.hostileSlowLength <= 0 || c.hostileJSONDepth <= 0 || c.hostileGRPCBytes < 1<<10 || c.hostileFields <= 0 {
		return errors.New("--hostile-rate, --hostile-timeout, --hostile-body-timeout, --hostile-slow-length, --hostile-json-depth and --hostile-fields must be positive, --hostile-grpc-bytes at least 1024")
	}

	if c.report != "" {
		return printReport(c)
	}
	limit, err := raiseFileLimit()
	if err != nil {
		return fmt.Errorf("raising RLIMIT_NOFILE: %w", err)
	}
	b := &bench{cfg: c, dialer: newDialer(c.sources)}
	if b.dir, err = os.MkdirTemp("", "herald-bench-"); err != nil {
		return err
	}
	if !c.keepLogs {
		defer os.RemoveAll(b.dir)
	}
	if c.profileDir != "" {
		if err := os.MkdirAll(c.profileDir, 0o755); err != nil {
			return err
		}
	}
	b.heraldBin = c.heraldBin
	if b.heraldBin == "" && c.targetHTTP == "" {
		fmt.Fprintf(os.Stderr, "building %s ...\n", c.heraldPkg)
		if b.heraldBin, err = buildHerald(context.Background(), c.heraldPkg, b.dir); err != nil {
			return err
		}
	}
	if b.heraldBin != "" {
		b.heraldDev = hasFlag(b.heraldBin, "dev")
		if hasFlag(b.heraldBin, "descriptors") {
			if b.schemas, err = writeSchemas(b.dir); err != nil {
				return err
			}
		}
	}
	peers, skipped, err := findPeers(c.peers)
	if err != nil {
		return err
	}
	b.peers = peers
	fmt.Printf("herald-bench: %s\n", machine())
	fmt.Printf("RLIMIT_NOFILE %d (servers inherit it); %d loopback source addresses; window %v after %v warm-up; heartbeat %v; logs in %s\n\n",
		limit, c.sources, c.duration, c.warmup, c.heartbeat, b.dir)
	for _, note := range skipped {
		fmt.Println(note)
	}
	if len(skipped) > 0 {
		fmt.Println()
	}

	switch c.publisher {
	case "grpc", "rest", "rest-struct":
	default:
		return fmt.Errorf("--publisher: want grpc, rest or rest-struct, not %q", c.publisher)
	}
	var fanoutRates []float64
	for _, r := range strings.Split(c.fanoutRates, ",") {
		rate, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || rate <= 0 {
			return fmt.Errorf("--fanout-rates: bad rate %q", r)
		}
		fanoutRates = append(fanoutRates, rate)
	}
	for _, name := range strings.Split(c.scenarios, ",") {
		switch strings.TrimSpace(name) {
		case "fanout":
			for _, rate := range fanoutRates {
				b.delivery(deliverySpec{key: fmt.Sprintf("fanout-%g", rate), title: fmt.Sprintf("1 fan-out %g/s", rate),
					conns: c.fanoutSubs, topics: 1, rate: rate})
			}
		case "firehose":
			b.delivery(deliverySpec{key: "firehose", title: fmt.Sprintf("2 firehose %g/s", c.firehoseRate),
				conns: c.firehoseSubs, topics: 1, rate: c.firehoseRate})
		case "topics":
			b.delivery(deliverySpec{key: "topics", title: fmt.Sprintf("3 many topics %g/s", c.topicsRate),
				conns: c.topics, topics: c.topics, rate: c.topicsRate, grpcFloor: c.grpcFloor && c.publisher == "grpc"})
		case "idle":
			b.delivery(deliverySpec{key: "idle", title: "4 idle", conns: c.idleConns, topics: 1})
		case "fanout-h2", "fanout-h2c", "idle-h2", "idle-h2c":
			base, proto, _ := strings.Cut(strings.TrimSpace(name), "-")
			if err := b.h2Scenario(base, proto, fanoutRates); err != nil {
				return err
			}
		case "publish":
			b.publish()
		case "slow":
			b.slow()
		case "filter":
			kinds := []string{"herald"}
			for _, n := range strings.Split(c.filterCounts, ",") {
				if k, err := strconv.Atoi(strings.TrimSpace(n)); err != nil || k <= 0 {
					return fmt.Errorf("--filter-counts: bad count %q", n)
				}
				kinds = append(kinds, "filter"+strings.TrimSpace(n))
			}
			b.delivery(deliverySpec{key: "filter", title: fmt.Sprintf("8 filters %g/s", c.filterRate),
				conns: c.filterSubs, topics: 1, rate: c.filterRate, kinds: kinds})
		case "snapshot":
			b.snapshot()
		case "hostile":
			b.hostile()
		case "cluster":
			b.cluster()
		case "":
		default:
			return fmt.Errorf("--scenarios: unknown scenario %q", name)
		}
	}

	fmt.Println()
	b.printTables(os.Stdout)
	if c.jsonOut != "" {
		out, _ := json.MarshalIndent(b.results, "", "  ")
		if err := os.WriteFile(c.jsonOut, append(out, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// machine describes the machine for the report.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		if f := strings.Fields(line); len(f) >= 2 {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			mem = fmt.Sprintf(", %.1f GiB RAM", float64(kb)/(1<<20))
		}
	}
	return fmt.Sprintf("%d CPUs (%s)%s, %s %s/%s", runtime.NumCPU(), model, mem, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// profile records the server's CPU profile (and with --perf a perf
// recording) for d, in the background; wait for it with the returned func.
func (b *bench) profile(srv *server, key string, d time.Duration) func() {
	if b.cfg.profileDir == "" || srv == nil {
		return func() {}
	}
	done := make(chan struct{}, 2)
	n := 0
	base := filepath.Join(b.cfg.profileDir, key+"-"+srv.kind)
	if srv.debug != "" {
		n++
		go func() {
			defer func() { done <- struct{}{} }()
			fetch(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", srv.debug, max(int(d.Seconds()), 1)), base+".cpu.pprof")
		}()
	}
	if b.cfg.perf && srv.pid > 0 {
		n++
		go func() {
			defer func() { done <- struct{}{} }()
			cmd := exec.Command("perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(srv.pid), "-o", base+".perf.data", "--", "sleep", strconv.FormatFloat(d.Seconds(), 'f', 1, 64))
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "perf record: %v: %s\n", err, out)
			}
		}()
	}
	return func() {
		for range n {
			<-done
		}
	}
}

// heapProfile saves the server's heap profile.
func (b *bench) heapProfile(srv *server, key string) {
	if b.cfg.profileDir == "" || srv == nil || srv.debug == "" {
		return
	}
	fetch("http://"+srv.debug+"/debug/pprof/heap", filepath.Join(b.cfg.profileDir, key+"-"+srv.kind+".heap.pprof"))
}

func fetch(url, path string) {
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}

// waitUntil waits for t.
func waitUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		<-time.After(d)
	}
}

func percentiles(lat []int64) (p50, p99, p999, maxv float64) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(q float64) float64 {
		i := int(q * float64(len(lat)))
		return float64(lat[min(i, len(lat)-1)]) / 1e3
	}
	return at(0.50), at(0.99), at(0.999), float64(lat[len(lat)-1]) / 1e3
}

// printReport prints the tables of an earlier run's --json file.
func printReport(c config) error {
	data, err := os.ReadFile(c.report)
	if err != nil {
		return err
	}
	b := &bench{cfg: c}
	if err := json.Unmarshal(data, &b.results); err != nil {
		return fmt.Errorf("%s: %w", c.report, err)
	}
	b.cfg.repeat = 1
	for _, r := range b.results {
		b.cfg.repeat = max(b.cfg.repeat, r.Run)
	}
	b.printTables(os.Stdout)
	return nil
}

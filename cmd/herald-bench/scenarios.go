package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A result is one scenario's figures for one server.
type result struct {
	Scenario string  `json:"scenario"`
	Title    string  `json:"title"`
	Server   string  `json:"server"` // herald, floor, raw or a peer (nchan)
	Run      int     `json:"run"`    // 1..--repeat
	Conns    int     `json:"conns"`
	Topics   int     `json:"topics"`
	Rate     float64 `json:"rate"` // target events/s
	Window   float64 `json:"windowSeconds"`

	Published        int64   `json:"published"`  // events published in the window
	Deliveries       int64   `json:"deliveries"` // received in the window
	DeliveriesPerSec float64 `json:"deliveriesPerSec"`
	P50              float64 `json:"p50Micros"` // publish→receive
	P99              float64 `json:"p99Micros"`
	P999             float64 `json:"p999Micros"`
	Max              float64 `json:"maxMicros"`
	Lost             int64   `json:"lost"`
	Dups             int64   `json:"duplicated"`
	Ended            int     `json:"streamsEndedByServer"`
	Heartbeats       int64   `json:"heartbeats"`

	ServerCPU      float64 `json:"serverCpuSeconds"` // in the window
	CPUPerDelivery float64 `json:"cpuMicrosPerDelivery"`
	RSSBefore      int64   `json:"rssBefore"`    // before connecting
	RSSConnected   int64   `json:"rssConnected"` // after connecting and settling
	RSSAfter       int64   `json:"rssAfter"`     // after the load
	RSSPerConn     float64 `json:"rssPerConn"`
	ServerCores    float64 `json:"serverCores"`  // CPU seconds per second
	HarnessCores   float64 `json:"harnessCores"` // the harness's own
	OtherCores     float64 `json:"otherCores"`   // everything else on the machine

	PublishPerSec float64 `json:"publishPerSec"`
	CPUPerPublish float64 `json:"cpuMicrosPerPublish"`
	Errors        int64   `json:"errors"`
	Note          string  `json:"note,omitempty"`

	// Scenario 6 (slow): Conns are the healthy subscribers, whose figures
	// the ones above are; Ended counts those the server cut.
	Stalled       int     `json:"stalled,omitempty"`
	StalledClosed int     `json:"stalledClosedByServer,omitempty"`
	StalledEnded  int     `json:"stalledEndedMetric,omitempty"` // herald_sse_streams_ended_total, slow + write; -1: not known
	WriteTimeout  float64 `json:"writeTimeoutSeconds,omitempty"`
	Bulk          int     `json:"bulkEvents,omitempty"` // published to the stalled ones only
	BulkSize      int     `json:"bulkBytes,omitempty"`  // JSON of each
	RSSPeak       int64   `json:"rssPeak,omitempty"`
	HeapConnected int64   `json:"heapConnected,omitempty"` // go_memstats_heap_inuse_bytes after a forced collection; 0: not known
	HeapPeak      int64   `json:"heapPeak,omitempty"`      // the highest sampled, garbage included
	HeapAfter     int64   `json:"heapAfter,omitempty"`     // after the cut and a forced collection
	HistoryBytes  int64   `json:"historyBytes,omitempty"`  // JSON of every event published: the most the history retains
	MissedBytes   int64   `json:"missedBytes,omitempty"`   // what the stalled subscribers did not read
	// Remark is what the run showed beyond its figures. Unlike Note it is
	// not a failure.
	Remark string `json:"remark,omitempty"`

	// Scenario 7 (hostile): one kind of request, sent at Rate for the
	// window; the window (Window, ServerCPU) runs until the last of them
	// was answered or given up on.
	Requests       int64                   `json:"requests,omitempty"` // sent in the window
	Answered       int64                   `json:"answered,omitempty"`
	AnsweredPerSec float64                 `json:"answeredPerSec,omitempty"`
	Statuses       map[string]*statusTally `json:"statuses,omitempty"` // by HTTP status or gRPC code
	Expected       []string                `json:"expected,omitempty"`
	Unexpected     int64                   `json:"unexpected,omitempty"` // requests not answered as expected
	CPUPerRequest  float64                 `json:"cpuMicrosPerRequest,omitempty"`
	CPUResolution  float64                 `json:"cpuResolutionMicros,omitempty"` // ± per request: /proc counts CPU in 10 ms ticks
	VsBaseline     float64                 `json:"cpuVsBaseline,omitempty"`       // CPUPerRequest ÷ the baseline kind's, same run
	MostOpen       int                     `json:"mostOpenAtOnce,omitempty"`      // requests open at once, at most
	BodyTimeout    float64                 `json:"bodyTimeoutSeconds,omitempty"`  // set by the harness; 0: the server's default

	clusterFigures // scenario 10 (cluster)
}

type deliverySpec struct {
	key, title    string
	conns, topics int
	rate          float64 // 0: idle, heartbeats only
	// kinds are the servers to run, if not the floors and Herald: "herald",
	// or "filterN", Herald with subscriber i filtered by filterText(i % N).
	kinds []string
	// proto is how subscribers connect: "" for HTTP/1.1, or protoH2 or
	// protoH2C (h2.go).
	proto string
	// grpcFloor adds the floor taking its events over gRPC ("grpc").
	grpcFloor bool
}

func (b *bench) delivery(spec deliverySpec) {
	kinds := b.kinds()
	if b.cfg.rawFloor && !b.cfg.noFloor {
		kinds = []string{"floor", "raw", "herald"}
	}
	if spec.grpcFloor && !b.cfg.noFloor {
		kinds = slices.Insert(kinds, slices.Index(kinds, "herald"), "grpc")
	}
	if spec.kinds != nil {
		kinds = spec.kinds
	} else {
		kinds = append(kinds, b.peers...)
	}
	b.runEach(spec.title, kinds, func(kind string) (*result, error) { return b.runDelivery(spec, kind) },
		func(kind string) *result {
			return &result{Scenario: spec.key, Title: spec.title, Server: kind, Conns: spec.conns, Topics: spec.topics, Rate: spec.rate}
		})
}

// runEach runs a scenario --repeat times, each time against every server
// of kinds in turn, and records one result per run and server. A failed
// run is recorded as blank's result, with the error as its note.
func (b *bench) runEach(title string, kinds []string, run func(kind string) (*result, error), blank func(kind string) *result) {
	for n := 1; n <= b.cfg.repeat; n++ {
		b.waitQuiet()
		for _, kind := range kinds {
			fmt.Fprintf(os.Stderr, "%-22s %-6s ...", title, kind)
			r, err := run(kind)
			if err != nil {
				fmt.Fprintf(os.Stderr, " failed: %v\n", err)
				r = blank(kind)
				r.Note = err.Error()
			} else {
				fmt.Fprintf(os.Stderr, " %s\n", r.brief())
			}
			r.Run = n
			b.results = append(b.results, r)
		}
	}
}

// waitQuiet waits, up to --quiet-wait, until the machine's CPU load
// (other than the harness's, which is idle between scenarios) is at most
// --quiet-below cores.
func (b *bench) waitQuiet() {
	if b.cfg.quietBelow <= 0 {
		return
	}
	deadline := time.Now().Add(b.cfg.quietWait)
	said := false
	for {
		m0, s0 := machineCPU(), selfCPU()
		<-time.After(time.Second)
		busy := (machineCPU() - m0 - (selfCPU() - s0)).Seconds()
		if busy <= b.cfg.quietBelow || time.Now().After(deadline) {
			if said {
				fmt.Fprintf(os.Stderr, " %.2f cores busy, going on\n", busy)
			}
			return
		}
		if !said {
			fmt.Fprintf(os.Stderr, "waiting for a quieter machine (%.2f cores busy) ...", busy)
			said = true
		}
	}
}

func (b *bench) kinds() []string {
	if b.cfg.noFloor {
		return []string{"herald"}
	}
	return []string{"floor", "herald"}
}

// filterText is the i-th distinct filter of the filter scenario: a test
// of a typed payload field that every event passes, so that filtered
// subscribers get what unfiltered ones do and loss is still measured.
func filterText(i int) string {
	return fmt.Sprintf(`payload.room != "none-%d" && payload.author == "%s"`, i, author)
}

func (r *result) brief() string {
	if r.Broker != "" {
		return r.clusterBrief()
	}
	if r.Scenario == "snapshot" {
		return fmt.Sprintf("%d snapshots of %d topics, p50 %s, %.2f ms server CPU each", r.Conns, r.Topics, ms(r.P50), r.CPUPerRequest/1e3)
	}
	if r.Requests > 0 {
		return fmt.Sprintf("%.1f answered/s (%s), %.1f µs server CPU each (%s baseline), RSS +%s MiB", r.AnsweredPerSec, statusSummary(r.Statuses), r.CPUPerRequest, ratioOf(r.VsBaseline), mib(r.RSSPeak-r.RSSBefore))
	}
	if r.PublishPerSec > 0 {
		return fmt.Sprintf("%.0f publishes/s, %.1f µs server CPU each", r.PublishPerSec, r.CPUPerPublish)
	}
	if r.Rate == 0 {
		return strings.TrimSuffix(fmt.Sprintf("%d conns, %.1f KiB/conn; %s", r.Conns, r.RSSPerConn/1024, r.Remark), "; ")
	}
	if r.Stalled > 0 {
		return fmt.Sprintf("%.0f deliveries/s, p99 %.2f ms, max %.2f ms, lost %d, %d of %d stalled cut, %.2f µs server CPU each",
			r.DeliveriesPerSec, r.P99/1e3, r.Max/1e3, r.Lost, r.StalledClosed, r.Stalled, r.CPUPerDelivery)
	}
	return fmt.Sprintf("%.0f deliveries/s, p99 %.2f ms, lost %d, %.2f µs server CPU each", r.DeliveriesPerSec, r.P99/1e3, r.Lost, r.CPUPerDelivery)
}

func (b *bench) runDelivery(spec deliverySpec, kind string) (*result, error) {
	cfg := b.cfg
	r := &result{Scenario: spec.key, Title: spec.title, Server: kind, Conns: spec.conns, Topics: spec.topics, Rate: spec.rate}
	var srv *server
	var err error
	filters, _ := strconv.Atoi(strings.TrimPrefix(kind, "filter"))
	isHerald := kind == "herald" || filters > 0
	protoFlags, err := b.protoFlags(spec.proto, !isHerald)
	if err != nil {
		return nil, err
	}
	if kind == "nchan" {
		srv, err = b.startNchan(spec.key, spec.conns)
	} else if !isHerald {
		srv, err = b.startFloor(spec.key, kind, "sse", protoFlags...)
	} else if filters > 0 {
		srv, err = b.startHerald(spec.key+"-"+kind, protoFlags...)
	} else {
		srv, err = b.startHerald(spec.key, protoFlags...)
	}
	if err != nil {
		return nil, err
	}
	defer srv.stop()

	names := topicNames(spec.topics)
	text := padding(cfg.payload)
	var s sink
	if spec.rate > 0 {
		texts := slices.Repeat([]string{text}, len(names))
		switch {
		case kind == "nchan": // raw POSTs, the way nchan takes publishes
			s, err = newPipeSink(srv.http, names, texts)
		case cfg.publisher != "grpc":
			s = newRESTSink(srv.http, names, texts, cfg.publisher == "rest-struct")
		case kind == "grpc":
			var g *grpcSink
			if g, err = b.newGRPCSink(srv.grpc, names, texts); err == nil {
				g.frames = true
				s = g
			}
		case !isHerald:
			s, err = newFloorSink(srv.ingest, names, texts)
		default:
			s, err = b.newGRPCSink(srv.grpc, names, texts)
		}
		if err != nil {
			return nil, err
		}
		defer s.close()
	}
	<-time.After(cfg.settle)
	r.RSSBefore = srv.rss()

	win := &window{}
	win.from.Store(1<<63 - 1) // nothing counts until the window is set
	ctx := context.Background()
	var filterOf func(int) string
	if filters > 0 {
		filterOf = func(i int) string { return filterText(i % filters) }
	}
	conns, err := b.openStreams(ctx, spec, srv.http, filterOf, win)
	if err != nil {
		return nil, err
	}
	defer func() { closeSSE(conns) }()
	<-time.After(cfg.settle)
	r.RSSConnected = srv.rss()
	r.RSSPerConn = float64(r.RSSConnected-r.RSSBefore) / float64(spec.conns)
	r.Remark = b.h2Remark(spec, r)
	b.heapProfile(srv, spec.key)

	var seqs []uint64
	var pubErr error
	pubDone := make(chan struct{})
	start := time.Now()
	from := start.Add(cfg.warmup)
	to := from.Add(cfg.duration)
	if spec.rate == 0 {
		from, to = start, start.Add(cfg.duration) // idle: the window is the hold
	}
	win.set(from, to)
	if s != nil {
		go func() {
			defer close(pubDone)
			seqs, pubErr = pace(ctx, s, spec.rate, spec.topics, to, cfg.tick)
		}()
	} else {
		close(pubDone)
	}
	waitUntil(from)
	a := snapCPU(srv.pid)
	profDone := b.profile(srv, spec.key, cfg.duration)
	waitUntil(to)
	z := snapCPU(srv.pid)
	<-pubDone
	profDone()
	if pubErr != nil {
		return nil, fmt.Errorf("publishing: %w", pubErr)
	}
	if s != nil {
		refused, err := s.finish(10 * time.Second)
		if err != nil {
			return nil, err
		}
		r.Errors = refused
	}

	if s != nil {
		drainSSE(conns, func(c *sseConn) uint64 { return seqs[c.topic] }, cfg.drain)
	}
	r.RSSAfter = srv.rss()
	if !srv.alive() {
		return nil, fmt.Errorf("%s exited during the run", kind)
	}
	r.Ended = ended(conns)
	closeSSE(conns)

	var lat []int64
	var stamped int64
	for _, c := range conns {
		r.Deliveries += c.inWindow
		stamped += c.stamped
		r.Dups += c.dups
		r.Lost += c.gaps
		if s != nil {
			r.Lost += int64(seqs[c.topic] - c.last.Load())
		}
		r.Heartbeats += c.heartbeats
		lat = append(lat, c.lat...)
	}
	r.P50, r.P99, r.P999, r.Max = percentiles(lat)
	b.cpu(r, a, z)
	r.DeliveriesPerSec = float64(r.Deliveries) / r.Window
	if r.Deliveries > 0 {
		r.CPUPerDelivery = r.ServerCPU / float64(r.Deliveries) * 1e6
	}
	if s != nil {
		per := spec.conns / spec.topics
		r.Published = stamped / int64(max(per, 1))
	}
	return r, nil
}

// cpu fills r's window and CPU figures from two snapshots.
func (b *bench) cpu(r *result, a, z cpuSnap) {
	w := z.at.Sub(a.at).Seconds()
	r.Window = w
	r.ServerCPU = (z.server - a.server).Seconds()
	r.ServerCores = r.ServerCPU / w
	r.HarnessCores = (z.self - a.self).Seconds() / w
	r.OtherCores = max((z.machine-a.machine).Seconds()/w-r.ServerCores-r.HarnessCores, 0)
}

// publish is scenario 5: Publish with concurrent callers and PublishStream
// with 0 and with subscribers, against Herald and the bare gRPC floor.
func (b *bench) publish() {
	for run := 1; run <= b.cfg.repeat; run++ {
		b.waitQuiet()
		for _, kind := range b.kinds() {
			n := len(b.results)
			if err := b.runPublish(kind); err != nil {
				fmt.Fprintf(os.Stderr, "5 publish %s failed: %v\n", kind, err)
				b.results = append(b.results, &result{Scenario: "publish", Title: "5 publish", Server: kind, Note: err.Error()})
			}
			for _, r := range b.results[n:] {
				r.Run = run
			}
		}
	}
}

func (b *bench) runPublish(kind string) error {
	cfg := b.cfg
	var srv *server
	var err error
	if kind == "floor" {
		srv, err = b.startFloor("publish", "floor", "grpc")
	} else {
		srv, err = b.startHerald("publish")
	}
	if err != nil {
		return err
	}
	defer srv.stop()
	conn, err := b.dialGRPC(srv.grpc)
	if err != nil {
		return err
	}
	defer conn.Close()
	text := padding(cfg.payload)
	topic := topicName(0)

	measure := func(key, title string, f *flood, win *window, start time.Time, conns []*sseConn) *result {
		r := &result{Scenario: key, Title: title, Server: kind, Conns: len(conns), Topics: 1}
		from := start.Add(cfg.warmup)
		to := from.Add(cfg.duration)
		if win != nil {
			win.set(from, to)
		}
		fmt.Fprintf(os.Stderr, "%-22s %-6s ...", title, kind)
		waitUntil(from)
		a, n0 := snapCPU(srv.pid), f.answered.Load()
		profDone := b.profile(srv, key, cfg.duration)
		waitUntil(to)
		z, n1 := snapCPU(srv.pid), f.answered.Load()
		f.halt()
		profDone()
		b.cpu(r, a, z)
		r.Published = n1 - n0
		r.PublishPerSec = float64(r.Published) / r.Window
		if r.Published > 0 {
			r.CPUPerPublish = r.ServerCPU / float64(r.Published) * 1e6
		}
		r.Errors = f.errs.Load() + f.refused.Load()
		r.P50, r.P99, r.P999, r.Max = percentiles(f.lat)
		r.RSSAfter = srv.rss()
		if !srv.alive() {
			r.Note = "server exited"
		}
		fmt.Fprintf(os.Stderr, " %s\n", r.brief())
		return r
	}

	// Publish with concurrent callers.
	win := &window{}
	win.from.Store(1<<63 - 1)
	start := time.Now()
	win.set(start.Add(cfg.warmup), start.Add(cfg.warmup+cfg.duration))
	f := floodUnary(conn, cfg.callers, topic, text, win)
	b.results = append(b.results, measure("publish-unary", fmt.Sprintf("5 Publish ×%d callers", cfg.callers), f, nil, start, nil))

	// PublishStream, nobody listening.
	f, err = floodStream(conn, topic, text, cfg.inflight, false)
	if err != nil {
		return err
	}
	b.results = append(b.results, measure("publish-stream", "5 PublishStream 0 subs", f, nil, time.Now(), nil))

	// PublishStream paced as scenario 3 publishes, nobody listening: what
	// receiving and answering one publish at a time costs a gRPC server,
	// bare or Herald (the part of scenario 3 its floor does not pay).
	paced, err := b.pacedPublish(srv, kind)
	if err != nil {
		return err
	}
	b.results = append(b.results, paced)

	if kind == "floor" || cfg.publishSubs <= 0 {
		return nil // the bare gRPC floor delivers to nobody
	}
	// PublishStream to subscribers, as fast as they take it: a subscriber
	// that falls behind by a whole queue is dropped, as it should be.
	swin := &window{}
	swin.from.Store(1<<63 - 1)
	conns, err := openSSE(context.Background(), b.dialer, srv.http, cfg.publishSubs, cfg.dialParallel, func(int) int { return 0 }, nil, swin)
	if err != nil {
		return err
	}
	defer func() { closeSSE(conns) }()
	f, err = floodStream(conn, topic, text, cfg.inflight, true)
	if err != nil {
		return err
	}
	r := measure("publish-stream-subs", fmt.Sprintf("5 PublishStream %d subs", cfg.publishSubs), f, swin, time.Now(), conns)
	last := uint64(f.sent.Load())
	drainSSE(conns, func(*sseConn) uint64 { return last }, cfg.drain)
	r.Ended = ended(conns)
	closeSSE(conns)
	var lat []int64
	var stamped int64
	for _, c := range conns {
		r.Deliveries += c.inWindow
		stamped += c.stamped
		r.Dups += c.dups
		r.Lost += c.gaps
		if c.err == nil {
			r.Lost += int64(last - c.last.Load())
		}
		lat = append(lat, c.lat...)
	}
	r.DeliveriesPerSec = float64(r.Deliveries) / r.Window
	r.P50, r.P99, r.P999, r.Max = percentiles(lat)
	if r.Ended > 0 {
		r.Note = fmt.Sprintf("%d of %d subscribers dropped as too slow (expected when publishing flat out)", r.Ended, len(conns))
	}
	b.results = append(b.results, r)
	return nil
}

// pacedPublish sends --topics-rate publishes per second over --topics
// topics on one PublishStream, as scenario 3 does, to srv with nobody
// listening, and measures srv's CPU per answered publish.
func (b *bench) pacedPublish(srv *server, kind string) (*result, error) {
	cfg := b.cfg
	title := fmt.Sprintf("5 PublishStream %g/s paced", cfg.topicsRate)
	r := &result{Scenario: "publish-paced", Title: title, Server: kind, Topics: cfg.topics, Rate: cfg.topicsRate}
	names := topicNames(cfg.topics)
	s, err := b.newGRPCSink(srv.grpc, names, slices.Repeat([]string{padding(cfg.payload)}, len(names)))
	if err != nil {
		return nil, err
	}
	defer s.close()
	fmt.Fprintf(os.Stderr, "%-22s %-6s ...", title, kind)
	start := time.Now()
	from := start.Add(cfg.warmup)
	to := from.Add(cfg.duration)
	var pubErr error
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		_, pubErr = pace(context.Background(), s, cfg.topicsRate, cfg.topics, to, cfg.tick)
	}()
	waitUntil(from)
	a, n0 := snapCPU(srv.pid), s.acked.Load()
	profDone := b.profile(srv, "publish-paced", cfg.duration)
	waitUntil(to)
	z, n1 := snapCPU(srv.pid), s.acked.Load()
	<-pubDone
	profDone()
	if pubErr != nil {
		return nil, fmt.Errorf("publishing: %w", pubErr)
	}
	refused, err := s.finish(10 * time.Second)
	if err != nil {
		return nil, err
	}
	b.cpu(r, a, z)
	r.Errors = refused
	r.Published = n1 - n0
	r.PublishPerSec = float64(r.Published) / r.Window
	if r.Published > 0 {
		r.CPUPerPublish = r.ServerCPU / float64(r.Published) * 1e6
	}
	fmt.Fprintf(os.Stderr, " %s\n", r.brief())
	return r, nil
}

// drainSSE waits for every open stream to receive the last seq of its
// topic: as long as the streams make progress (a server that fell behind
// is late, not lossy), but no longer than idle without any and never
// longer than 10 times idle in all.
func drainSSE(conns []*sseConn, last func(*sseConn) uint64, idle time.Duration) {
	deadline := time.Now().Add(10 * idle)
	progress, seen := time.Now(), received(conns)
	for time.Now().Before(deadline) && time.Since(progress) < idle {
		behind := 0
		for _, c := range conns {
			select {
			case <-c.done:
				continue
			default:
			}
			if c.last.Load() < last(c) {
				behind++
			}
		}
		if behind == 0 {
			return
		}
		if n := received(conns); n != seen {
			progress, seen = time.Now(), n
		}
		<-time.After(10 * time.Millisecond)
	}
}

package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// A target is one of issue 7's: Herald's figure over the floor's must
// stay at or under limit (or, for throughput, at or over it).
type target struct {
	what     string
	scenario string
	metric   string // cpu, p99, rss, publish
	limit    float64
	atLeast  bool
}

// A filterTarget is the filter scenario's: CPU per delivery with
// subscribers over so many distinct filters, against the unfiltered
// fan-out in the same run.
var filterTarget = struct {
	server string
	limit  float64
}{"filter10", 1.25}

var targets = []target{
	{"CPU per delivery", "fanout-100", "cpu", 1.25, false},
	{"CPU per delivery", "fanout-20", "cpu", 1.25, false},
	{"CPU per delivery", "firehose", "cpu", 1.25, false},
	{"CPU per delivery", "topics", "cpu", 2, false},
	{"p99 publish→receive", "fanout-100", "p99", 1, false},
	{"p99 publish→receive", "fanout-20", "p99", 1, false},
	{"p99 publish→receive", "firehose", "p99", 1, false},
	{"memory per idle connection", "idle", "rss", 1.5, false},
	// Issue 18: over HTTP/2, against the floor served the same way; at
	// 20/s only, as at 100/s the HTTP/2 floor's one writer, waiting for
	// each frame to be written, falls behind on a small machine.
	{"CPU per delivery", "fanout-h2-20", "cpu", 1.25, false},
	{"CPU per delivery", "fanout-h2c-20", "cpu", 1.25, false},
	{"p99 publish→receive", "fanout-h2-20", "p99", 1, false},
	{"p99 publish→receive", "fanout-h2c-20", "p99", 1, false},
	{"PublishStream throughput, 0 subscribers", "publish-stream", "publish", 0.5, true},
}

// find returns a server's result in a scenario. Of several runs it takes
// the one in which the rest of the machine was least busy, the same run for
// every server, so that ratios compare figures taken side by side.
func (b *bench) find(scenario, server string) *result {
	usable := func(r *result) bool {
		return r.Scenario == scenario && (r.Note == "" || strings.Contains(r.Note, "dropped"))
	}
	load := map[int]float64{}
	for _, r := range b.results {
		if usable(r) {
			load[r.Run] += r.OtherCores
		}
	}
	best := -1
	for run, l := range load {
		if best < 0 || l < load[best] || l == load[best] && run < best {
			best = run
		}
	}
	for _, r := range b.results {
		if usable(r) && r.Run == best && r.Server == server {
			return r
		}
	}
	return nil
}

// serversOf lists the servers a delivery scenario ran, in table order.
func (b *bench) serversOf(scenario string) []string {
	var out []string
	for _, kind := range []string{"floor", "raw", "grpc", "herald", "nchan"} {
		if b.find(scenario, kind) != nil {
			out = append(out, kind)
		}
	}
	for _, r := range b.results {
		if r.Scenario == scenario && strings.HasPrefix(r.Server, "filter") && !slices.Contains(out, r.Server) {
			out = append(out, r.Server)
		}
	}
	return out
}

// ratiosOf lists the pairs of servers whose figures a delivery scenario's
// table divides: Herald by each floor and peer, or each filtered run by
// the unfiltered one.
func (b *bench) ratiosOf(scenario string) [][2]string {
	var out [][2]string
	for _, kind := range b.serversOf(scenario) {
		switch {
		case kind == "floor" || kind == "raw" || kind == "grpc" || kind == "nchan":
			out = append(out, [2]string{"herald", kind})
		case strings.HasPrefix(kind, "filter"):
			out = append(out, [2]string{kind, "herald"})
		}
	}
	return out
}

func ratio(h, f float64) string {
	if f <= 0 || h <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", h/f)
}

func ms(us float64) string {
	if us == 0 {
		return "–"
	}
	if us < 1000 {
		return fmt.Sprintf("%.0fµs", us)
	}
	return fmt.Sprintf("%.2fms", us/1e3)
}

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }
func mib(b int64) string   { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) }

func (b *bench) printTables(w io.Writer) {
	if b.cfg.repeat > 1 {
		fmt.Fprintf(w, "Every scenario ran %d times; its rows are from the run in which the rest of the machine was least busy (all runs are in --json).\n\n", b.cfg.repeat)
	}
	fmt.Fprintln(w, "Delivery (scenarios 1–4): deliveries received in the window; server CPU per delivery from /proc/<pid>/stat; latency from the publish stamp")
	fmt.Fprintln(w, "to the client's read, for events published in the window; cores = CPU seconds per second of the window. floor: net/http, one writer goroutine;")
	fmt.Fprintln(w, "raw: hijacked sockets, no goroutine or buffer per connection (reference only; the targets are against floor)")
	if b.ran("grpc") {
		fmt.Fprintln(w, "grpc: the floor, taking its pre-framed events over a grpc-go PublishStream, one answer each, instead of raw TCP (reference only)")
	}
	if b.ran("nchan") {
		fmt.Fprintln(w, "nchan: nginx with the nchan module, one process, EventSource subscribers, raw POSTs of the event's JSON (a peer; no targets)")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tserver\tconns\tdeliveries/s\tp50\tp99\tp99.9\tmax\tlost\tdup\tended\tCPU/delivery\tserver cores\tRSS MiB before→conn→after\tRSS/conn\tharness cores\tother cores\t")
	seen := map[string]bool{}
	for _, r := range b.results {
		if strings.HasPrefix(r.Scenario, "publish") || strings.HasPrefix(r.Scenario, "hostile") || strings.HasPrefix(r.Scenario, "cluster") || r.Scenario == "slow" || r.Scenario == "snapshot" || seen[r.Scenario] {
			continue
		}
		seen[r.Scenario] = true
		for _, kind := range b.serversOf(r.Scenario) {
			x := b.find(r.Scenario, kind)
			if x == nil {
				continue
			}
			cpu := fmt.Sprintf("%.2fµs", x.CPUPerDelivery)
			if x.Rate == 0 {
				cpu = "–"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%.2f\t%s→%s→%s\t%s\t%.2f\t%.2f\t\n",
				x.Title, kind, x.Conns, x.DeliveriesPerSec, ms(x.P50), ms(x.P99), ms(x.P999), ms(x.Max), x.Lost, x.Dups, x.Ended,
				cpu, x.ServerCores, mib(x.RSSBefore), mib(x.RSSConnected), mib(x.RSSAfter), kib(x.RSSPerConn), x.HarnessCores, x.OtherCores)
		}
		for _, pair := range b.ratiosOf(r.Scenario) {
			h, f := b.find(r.Scenario, pair[0]), b.find(r.Scenario, pair[1])
			if h != nil && f != nil {
				fmt.Fprintf(tw, "\t%s/%s\t\t%s\t%s\t%s\t%s\t%s\t\t\t\t%s\t%s\t\t%s\t\t\t\n", pair[0], pair[1],
					ratio(h.DeliveriesPerSec, f.DeliveriesPerSec), ratio(h.P50, f.P50), ratio(h.P99, f.P99), ratio(h.P999, f.P999), ratio(h.Max, f.Max),
					ratio(h.CPUPerDelivery, f.CPUPerDelivery), ratio(h.ServerCores, f.ServerCores), ratio(h.RSSPerConn, f.RSSPerConn))
			}
		}
	}
	tw.Flush()

	fmt.Fprintln(w, "\nPublish (scenario 5): answered publishes per second; unary latency per call; the floor is a bare gRPC server that only acknowledges")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tserver\tpublishes/s\tCPU/publish\tcall p50\tcall p99\tdeliveries/s\tserver cores\tharness cores\tother cores\terrors\tnote\t")
	for _, key := range []string{"publish-unary", "publish-stream", "publish-paced", "publish-stream-subs"} {
		for _, kind := range []string{"floor", "herald"} {
			x := b.find(key, kind)
			if x == nil {
				continue
			}
			dps := "–"
			if x.DeliveriesPerSec > 0 {
				dps = fmt.Sprintf("%.0f", x.DeliveriesPerSec)
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.2fµs\t%s\t%s\t%s\t%.2f\t%.2f\t%.2f\t%d\t%s\t\n",
				x.Title, kind, x.PublishPerSec, x.CPUPerPublish, ms(x.P50), ms(x.P99), dps, x.ServerCores, x.HarnessCores, x.OtherCores, x.Errors, x.Note)
		}
		h, f := b.find(key, "herald"), b.find(key, "floor")
		if h != nil && f != nil {
			fmt.Fprintf(tw, "\therald/floor\t%s\t%s\t%s\t%s\t\t\t\t\t\t\t\n", ratio(h.PublishPerSec, f.PublishPerSec), ratio(h.CPUPerPublish, f.CPUPerPublish), ratio(h.P50, f.P50), ratio(h.P99, f.P99))
		}
	}
	tw.Flush()

	b.printSlow(w)
	b.printSnapshot(w)
	b.printHostile(w)
	b.printCluster(w)

	fmt.Fprintln(w, "\nTargets (issues 7 and 18): Herald ÷ floor, same run, same client")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tscenario\therald\tfloor\tratio\tlimit\tverdict\t")
	for _, t := range targets {
		h, f := b.find(t.scenario, "herald"), b.find(t.scenario, "floor")
		if h == nil || f == nil {
			continue
		}
		var hv, fv float64
		var unit func(float64) string
		switch t.metric {
		case "cpu":
			hv, fv, unit = h.CPUPerDelivery, f.CPUPerDelivery, func(v float64) string { return fmt.Sprintf("%.2fµs", v) }
		case "p99":
			hv, fv, unit = h.P99, f.P99, ms
		case "rss":
			hv, fv, unit = h.RSSPerConn, f.RSSPerConn, kib
		case "publish":
			hv, fv, unit = h.PublishPerSec, f.PublishPerSec, func(v float64) string { return fmt.Sprintf("%.0f/s", v) }
		}
		verdict := "–"
		if fv > 0 && hv > 0 {
			q := hv / fv
			ok := q <= t.limit
			if t.atLeast {
				ok = q >= t.limit
			}
			verdict = "met"
			if !ok {
				verdict = "MISSED"
			}
			if (t.metric == "cpu" || t.metric == "p99") && (h.Lost > 0 || h.Dups > 0) {
				verdict += fmt.Sprintf(" (but %d lost, %d dup)", h.Lost, h.Dups)
			}
		}
		op := "≤"
		if t.atLeast {
			op = "≥"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s %g×\t%s\t\n", t.what, h.Title, unit(hv), unit(fv), ratio(hv, fv), op, t.limit, verdict)
	}
	if h, f := b.find("filter", filterTarget.server), b.find("filter", "herald"); h != nil && f != nil && f.CPUPerDelivery > 0 {
		verdict := "met"
		if h.CPUPerDelivery/f.CPUPerDelivery > filterTarget.limit {
			verdict = "MISSED"
		}
		if h.Lost > 0 || h.Dups > 0 {
			verdict += fmt.Sprintf(" (but %d lost, %d dup)", h.Lost, h.Dups)
		}
		fmt.Fprintf(tw, "CPU per delivery, %s filters ÷ none\t%s\t%.2fµs\t%.2fµs (unfiltered)\t%s\t≤ %g×\t%s\t\n",
			strings.TrimPrefix(filterTarget.server, "filter"), h.Title, h.CPUPerDelivery, f.CPUPerDelivery, ratio(h.CPUPerDelivery, f.CPUPerDelivery), filterTarget.limit, verdict)
	}
	tw.Flush()
}

// printSlow prints scenario 6's table and checks, if it ran.
func (b *bench) printSlow(w io.Writer) {
	h, f := b.find("slow", "herald"), b.find("slow", "floor")
	x := h
	if x == nil {
		x = f
	}
	if x == nil {
		return
	}
	fmt.Fprintf(w, "\nSlow clients (scenario 6): %d healthy subscribers of a topic at %g events/s; %d stalled ones subscribe to it and to a topic that gets\n", x.Conns, x.Rate, x.Stalled)
	fmt.Fprintf(w, "%d events of %s from the window's start, and never read (4 KiB receive buffer). Write timeout %v. Deliveries, latency, loss and CPU\n", x.Bulk, kib(float64(x.BulkSize)), time.Duration(x.WriteTimeout*float64(time.Second)))
	fmt.Fprintln(w, "are the healthy subscribers'; stalled cut: streams the server closed (read to their end); ended: herald_sse_streams_ended_total slow+write.")
	fmt.Fprintln(w, "Heap: go_memstats_heap_inuse_bytes after a forced collection (the peak is sampled, garbage included). The floor writes every stream in turn,")
	fmt.Fprintln(w, "under one lock, with the same write timeout")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tserver\thealthy\tdeliveries/s\tp50\tp99\tp99.9\tmax\tlost\tdup\thealthy cut\tstalled cut\tended\tCPU/delivery\tserver cores\tRSS MiB before→conn→peak→after\theap MiB conn→peak→after\tharness cores\tother cores\t")
	for _, x := range []*result{f, h} {
		if x == nil {
			continue
		}
		endedN := "–"
		if x.StalledEnded >= 0 && x.Server == "herald" {
			endedN = fmt.Sprint(x.StalledEnded)
		}
		heap := "–"
		if x.HeapConnected > 0 {
			heap = fmt.Sprintf("%s→%s→%s", mib(x.HeapConnected), mib(x.HeapPeak), mib(x.HeapAfter))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d/%d\t%s\t%.2fµs\t%.2f\t%s→%s→%s→%s\t%s\t%.2f\t%.2f\t\n",
			x.Title, x.Server, x.Conns, x.DeliveriesPerSec, ms(x.P50), ms(x.P99), ms(x.P999), ms(x.Max), x.Lost, x.Dups, x.Ended,
			x.StalledClosed, x.Stalled, endedN, x.CPUPerDelivery, x.ServerCores,
			mib(x.RSSBefore), mib(x.RSSConnected), mib(x.RSSPeak), mib(x.RSSAfter), heap, x.HarnessCores, x.OtherCores)
	}
	tw.Flush()
	for _, x := range []*result{f, h} {
		if x != nil && x.Remark != "" {
			fmt.Fprintf(w, "%s: %s\n", x.Server, x.Remark)
		}
	}
	if h == nil {
		return
	}
	fmt.Fprintln(w, "\nTargets (scenario 6): Herald's own figures, not ratios: a stalled subscriber holds no healthy one up, is cut, and costs no memory beyond the history")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\therald\tlimit\tverdict\t")
	for _, c := range slowChecks(h) {
		verdict := "met"
		if !c.ok {
			verdict = "MISSED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", c.what, c.value, c.limit, verdict)
	}
	tw.Flush()
}

// A slowCheck is one of scenario 6's targets, checked on Herald's result.
type slowCheck struct {
	what, value, limit string
	ok                 bool
}

// slowChecks are the bounds TestSlowAndDeadClients used to assert, checked
// where figures belong. Had Herald waited on a stalled subscriber, the
// healthy ones would have waited out its write timeout; had it buffered
// per subscriber, its heap would hold what the stalled ones did not read
// (MissedBytes). What it may hold is the history every subscriber can
// resume from: each retained event as its payload and its frame, about
// twice its JSON, so the bound is three times the history's JSON.
func slowChecks(h *result) []slowCheck {
	wt := h.WriteTimeout * 1e6 // µs, like the latencies
	d := time.Duration(h.WriteTimeout * float64(time.Second))
	checks := []slowCheck{
		{"healthy p99 publish→receive", ms(h.P99), fmt.Sprintf("≤ ¼ write timeout, %v", d/4), h.P99 > 0 && h.P99 <= wt/4},
		{"healthy max publish→receive", ms(h.Max), fmt.Sprintf("< write timeout, %v", d), h.Max > 0 && h.Max < wt},
		{"healthy lost / duplicated", fmt.Sprintf("%d / %d", h.Lost, h.Dups), "0 / 0", h.Lost == 0 && h.Dups == 0},
		{"healthy streams cut", fmt.Sprint(h.Ended), "0", h.Ended == 0},
		{"stalled streams closed by the server", fmt.Sprintf("%d of %d", h.StalledClosed, h.Stalled), "all", h.StalledClosed == h.Stalled},
		{"stalled streams ended as slow or write (metric)", fmt.Sprintf("%d of %d", h.StalledEnded, h.Stalled), "all", h.StalledEnded == h.Stalled},
	}
	if h.HeapConnected > 0 && h.HeapAfter > 0 {
		growth := h.HeapAfter - h.HeapConnected
		checks = append(checks, slowCheck{"heap after the cut − heap connected", fmt.Sprintf("%+.1f MiB", float64(growth)/(1<<20)),
			fmt.Sprintf("≤ 3 × history, %.1f MiB (the stalled missed %.0f MiB)", float64(3*h.HistoryBytes)/(1<<20), float64(h.MissedBytes)/(1<<20)),
			growth <= 3*h.HistoryBytes})
	}
	return checks
}

// printHostile prints scenario 7's table, if it ran.
func (b *bench) printHostile(w io.Writer) {
	// One run for every kind, the one in which the rest of the machine was
	// least busy, so that each row's ratio is to the baseline shown.
	load := map[int]float64{}
	for _, r := range b.results {
		if strings.HasPrefix(r.Scenario, "hostile-") {
			load[r.Run] += r.OtherCores
		}
	}
	if len(load) == 0 {
		return
	}
	best := -1
	for run, l := range load {
		if best < 0 || l < load[best] || l == load[best] && run < best {
			best = run
		}
	}
	var rows []*result
	for _, key := range hostileKeys {
		for _, r := range b.results {
			if r.Scenario == "hostile-"+key && r.Run == best {
				rows = append(rows, r)
			}
		}
	}
	x := rows[0]
	timeout := "the server's default body read timeout"
	if x.BodyTimeout > 0 {
		timeout = fmt.Sprintf("--body-read-timeout %gs", x.BodyTimeout)
	}
	fmt.Fprintf(w, "\nHostile input (scenario 7): a secured Herald (HS256 tokens, public.> open), a fresh one for each kind of request, sent at %g/s\n", x.Rate)
	fmt.Fprintf(w, "for the window (held kinds without warm-up), each on a new connection; %s. answers: status×count (fastest–slowest answer).\n", timeout)
	fmt.Fprintln(w, "CPU per request: the server's, from the window's start until the last request was answered, ÷ the requests; ± is /proc's 10 ms tick")
	fmt.Fprintln(w, "spread over them; ×baseline: ÷ the tokenless tiny publish's, same run. RSS: before the kind, its peak (sampled every 100 ms), after")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\trequests\tanswered/s\tanswers\texpected\tCPU/request\t±\t×baseline\tRSS MiB before→peak→after\tmost open\tserver cores\tharness cores\tother cores\t")
	for _, x := range rows {
		if x.Note != "" {
			continue
		}
		expected := strings.Join(x.Expected, " or ")
		if x.Unexpected > 0 {
			expected += fmt.Sprintf(": %d NOT", x.Unexpected)
		}
		cpu := micros(x.CPUPerRequest)
		if x.CPUPerRequest == 0 {
			cpu = "< " + micros(x.CPUResolution) // not one tick in the window
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s→%s→%s\t%d\t%.2f\t%.2f\t%.2f\t\n",
			x.Title, x.Requests, x.AnsweredPerSec, statusSummary(x.Statuses), expected, cpu, micros(x.CPUResolution), ratioOf(x.VsBaseline),
			mib(x.RSSBefore), mib(x.RSSPeak), mib(x.RSSAfter), x.MostOpen, x.ServerCores, x.HarnessCores, x.OtherCores)
	}
	tw.Flush()
	for _, x := range rows {
		if x.Note != "" {
			fmt.Fprintf(w, "%s: failed: %s\n", x.Title, x.Note)
		}
		for _, s := range sortedStatuses(x.Statuses) {
			if m := x.Statuses[s].Sample; m != "" {
				fmt.Fprintf(w, "%s, %s: %s\n", x.Title, s, m)
			}
		}
	}
}

// statusSummary is "401×500 (312µs–2.10ms)", for each status seen.
func statusSummary(m map[string]*statusTally) string {
	var parts []string
	for _, s := range sortedStatuses(m) {
		t := m[s]
		parts = append(parts, fmt.Sprintf("%s×%d (%s–%s)", s, t.N, ms(t.MinMicros), ms(t.MaxMicros)))
	}
	return strings.Join(parts, ", ")
}

func sortedStatuses(m map[string]*statusTally) []string {
	keys := make([]string, 0, len(m))
	for s := range m {
		keys = append(keys, s)
	}
	slices.Sort(keys)
	return keys
}

func ratioOf(q float64) string {
	if q <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", q)
}

// micros is a CPU time in µs, in the unit that suits it.
func micros(us float64) string {
	switch {
	case us <= 0:
		return "–"
	case us >= 1e6:
		return fmt.Sprintf("%.2fs", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.2fms", us/1e3)
	}
	return fmt.Sprintf("%.1fµs", us)
}

// ran reports whether any scenario ran against server.
func (b *bench) ran(server string) bool {
	return slices.ContainsFunc(b.results, func(r *result) bool { return r.Server == server })
}

package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// result is what a run found.
type result struct {
	cfg      config
	samples  []sample
	fits     []fit
	counters map[string]int64
	metrics  map[string]float64 // the server's herald_* figures at the end
	races    int                // data race reports in a -race server's log
	exit     error              // the server's exit, if it ended before the run did
	cpu, ran time.Duration      // herald's CPU time over the run, and the run's length
	// noSnapshot says why the server took no snapshots, if it cannot.
	noSnapshot string
	// interrupted is set when the run was stopped (SIGINT) before its end.
	interrupted bool
	started     time.Time
}

// problems lists why the run fails; empty when it passes.
func (r *result) problems() []string {
	var out []string
	if r.interrupted {
		out = append(out, "interrupted before the end of --duration")
	}
	if r.exit != nil {
		out = append(out, fmt.Sprintf("herald exited during the run: %v", r.exit))
	}
	if r.races > 0 {
		out = append(out, fmt.Sprintf("%d data race reports in herald.log", r.races))
	}
	for _, f := range r.fits {
		if !f.ok {
			out = append(out, fmt.Sprintf("%s grows %+.2f %s/h after warm-up, over the bound of %g", f.name, f.slope, f.unit, f.bound))
		}
	}
	for _, c := range violationCounters {
		if r.counters[c] > 0 {
			out = append(out, fmt.Sprintf("%s: %d (see errors.log)", c, r.counters[c]))
		}
	}
	for _, c := range activityCounters {
		if c == cSnapshots && r.noSnapshot != "" {
			continue
		}
		if r.counters[c] == 0 {
			out = append(out, fmt.Sprintf("no %s in the whole run", c))
		}
	}
	return out
}

func (r *result) passed() bool     { return len(r.problems()) == 0 }
func (r *result) failures() string { return strings.Join(r.problems(), "; ") }

// run runs one soak: it starts herald, drives the clients for cfg.duration
// while sampling, stops everything, and writes soak.csv, the charts,
// summary.md and errors.log into cfg.out. Its error is for runs that could
// not be made; a run whose checks fail returns a result that did not pass.
func run(ctx context.Context, cfg config, log io.Writer) (*result, error) {
	return runWith(ctx, cfg, log, false)
}

// runWith is run building herald with the race detector when race is set
// and no binary is given.
func runWith(ctx context.Context, cfg config, log io.Writer, race bool) (*result, error) {
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return nil, err
	}
	bin := cfg.herald
	if bin == "" {
		fmt.Fprintln(log, "building ./cmd/herald")
		var err error
		if bin, err = buildHerald(ctx, cfg.out, race); err != nil {
			return nil, err
		}
	}
	srv, err := startServer(bin, cfg.out, cfg.heraldArgs)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()

	st := newStats()
	push := newPusher(srv, st, conn)
	if err := push.pushTick(ctx); err != nil {
		return nil, err
	}
	pubs := &publishers{srv: srv, st: st, conn: conn, http: &http.Client{Timeout: 30 * time.Second}}
	subs := &subscribers{srv: srv, st: st, conn: conn, plain: sseClient(0), small: sseClient(4096),
		token: srv.token("soak-subscriber", subscribeGrants, cfg.duration+time.Hour)}
	noSnapshot, err := subs.probeSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	if noSnapshot != "" {
		subs.noSnapshot = true
		fmt.Fprintf(log, "no snapshots (%s): the snapshot clients subscribe with filters only\n", noSnapshot)
	}
	check := cfg.check == "on" || cfg.check == "auto" && cfg.duration-cfg.warmup >= cfg.minFit
	fmt.Fprintf(log, "herald pid %d: HTTP %s, gRPC %s; soak for %v, warm-up %v, a sample every %v, slope check %v; writing %s\n",
		srv.pid, srv.http, srv.grpc, cfg.duration, cfg.warmup, cfg.interval, map[bool]string{true: "on", false: "off"}[check], cfg.out)

	res := &result{cfg: cfg, started: time.Now(), noSnapshot: noSnapshot}
	cctx, stopClients := context.WithCancel(ctx)
	var wg sync.WaitGroup
	goN := func(n int, f func(context.Context)) {
		for range n {
			wg.Go(func() { f(cctx) })
		}
	}
	l := cfg.load
	goN(1, func(ctx context.Context) { pubs.unary(ctx, l.unaryRate) })
	goN(1, func(ctx context.Context) { pubs.stream(ctx, l.streamRate) })
	goN(1, func(ctx context.Context) { pubs.rest(ctx, l.restRate, l.deleteEvery) })
	goN(1, func(ctx context.Context) { pubs.bulk(ctx, l.bulkRate) })
	goN(1, func(ctx context.Context) {
		if wait(ctx, 5*time.Second) {
			push.push(ctx)
			every(ctx, 1/l.pushEvery.Seconds(), push.push)
		}
	})
	goN(l.churn, subs.churn)
	goN(l.expiring, subs.expiring)
	goN(l.slow, subs.slow)
	goN(l.vanish, subs.vanish)
	goN(l.snapshot, subs.snapshot)
	goN(l.grpcSubs, subs.grpcSubscribe)

	err = res.sample(ctx, cfg, srv, st, log)
	stopClients()
	wg.Wait()
	res.cpu, _ = procCPU(srv.pid)
	res.ran = time.Since(res.started)
	if m, merr := scrapeHerald(srv); merr == nil {
		res.metrics = m
	}
	if !srv.alive() {
		res.exit = fmt.Errorf("%v; see %s", srv.exitErr, srv.logPath)
	}
	srv.stop()
	res.counters = st.snapshot()
	res.races = countRaces(srv.logPath)
	switch {
	case err != nil && ctx.Err() != nil:
		// Interrupted: keep what was measured, and fail.
		res.interrupted = true
	case err != nil && res.exit == nil:
		return nil, err
	}
	if len(res.samples) == 0 {
		return nil, errors.New("no samples were taken")
	}
	res.fits = fitAll(res.samples, cfg.warmup, cfg.bounds, check)
	if err := os.WriteFile(filepath.Join(cfg.out, "errors.log"), []byte(st.errorLog()), 0o644); err != nil {
		return nil, err
	}
	if err := drawCharts(cfg.out, res.samples, cfg.warmup, res.fits); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cfg.out, "summary.md"), []byte(res.summary()), 0o644); err != nil {
		return nil, err
	}
	for _, f := range res.fits {
		fmt.Fprintln(log, f)
	}
	fmt.Fprintf(log, "wrote %s\n", strings.Join([]string{filepath.Join(cfg.out, "soak.csv"), "*.png", "summary.md", "errors.log"}, ", "))
	return res, nil
}

// sample takes a sample now and every cfg.interval until cfg.duration has
// passed, writing each to soak.csv as it goes (a run cut short keeps what
// it measured) and a line of it to log. It stops early if herald exits.
func (r *result) sample(ctx context.Context, cfg config, srv *server, st *stats, log io.Writer) error {
	f, err := os.Create(filepath.Join(cfg.out, "soak.csv"))
	if err != nil {
		return err
	}
	defer f.Close()
	w := csv.NewWriter(f)
	if err := w.Write(csvHeader); err != nil {
		return err
	}
	sm := &sampler{srv: srv, st: st, client: &http.Client{Timeout: 30 * time.Second}}
	end := time.NewTimer(cfg.duration)
	defer end.Stop()
	tick := time.NewTicker(cfg.interval)
	defer tick.Stop()
	for last := false; ; {
		s, err := sm.take(ctx, time.Since(r.started))
		if err != nil {
			if !srv.alive() {
				return errors.New("herald exited")
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			st.fail("sampling", err)
		} else {
			r.samples = append(r.samples, s)
			if err := w.Write(s.record()); err != nil {
				return err
			}
			w.Flush()
			if err := w.Error(); err != nil {
				return err
			}
			fmt.Fprintf(log, "%7s  rss %6.1f MiB  heap %6.1f MiB  goroutines %5.0f  fds %4.0f  streams %4.0f  published %8.0f  delivered %9.0f  errors %d\n",
				s.elapsed.Round(time.Second), s.rss/mib, s.heap/mib, s.goroutines, s.fds, s.streams, s.published, s.delivered, st.get(cErrors))
		}
		if last {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-srv.exited:
			return errors.New("herald exited")
		case <-end.C:
			last = true // one more sample, at the end
		case <-tick.C:
		}
	}
}

// scrapeHerald reads the server's herald_* figures.
func scrapeHerald(srv *server) (map[string]float64, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + srv.http + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m, err := parseMetrics(resp.Body)
	if err != nil {
		return nil, err
	}
	for k := range m {
		if !strings.HasPrefix(k, "herald_") || strings.Contains(k, "_bucket{") {
			delete(m, k)
		}
	}
	return m, nil
}

// countRaces counts the race detector's reports in a log.
func countRaces(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte("WARNING: DATA RACE"))
}

// summary is summary.md: the run's settings, figures and counters.
func (r *result) summary() string {
	var b strings.Builder
	cfg := r.cfg
	verdict := "passed"
	if !r.passed() {
		verdict = "FAILED: " + r.failures()
	}
	fmt.Fprintf(&b, "# Soak run of %s\n\n", r.started.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "Duration %v, warm-up %v, a sample every %v (%d samples); %s, %d CPUs; herald serve %s.\n\n",
		cfg.duration, cfg.warmup.Round(time.Second), cfg.interval, len(r.samples), runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(),
		strings.Join(append([]string{"(defaults of herald-soak)"}, cfg.heraldArgs...), " "))
	if r.ran > 0 {
		fmt.Fprintf(&b, "herald used %v of CPU in %v (%.1f%% of one core).\n\n", r.cpu.Round(time.Second), r.ran.Round(time.Second), 100*r.cpu.Seconds()/r.ran.Seconds())
	}
	if r.noSnapshot != "" {
		fmt.Fprintf(&b, "This server's broker takes no snapshots (%s): the snapshot clients subscribed with filters only.\n\n", r.noSnapshot)
	}
	fmt.Fprintf(&b, "Result: **%s**\n\n", verdict)
	b.WriteString("| resource | start | end | peak | slope after warm-up (per hour) | bound (per hour) | check |\n|---|---:|---:|---:|---:|---:|---|\n")
	for _, f := range r.fits {
		verdict := "not checked (run too short)"
		if f.checked {
			verdict = map[bool]string{true: "ok", false: "**FAIL**"}[f.ok]
		}
		fmt.Fprintf(&b, "| %s (%s) | %.1f | %.1f | %.1f | %+.2f | %g | %s |\n", f.name, f.unit, f.start, f.end, f.peak, f.slope, f.bound, verdict)
	}
	b.WriteString("\n## Client activity\n\n| counter | count |\n|---|---:|\n")
	names := make([]string, 0, len(r.counters))
	for n := range r.counters {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "| %s | %d |\n", n, r.counters[n])
	}
	if len(r.metrics) > 0 {
		b.WriteString("\n## The server's counters at the end\n\n```\n")
		keys := make([]string, 0, len(r.metrics))
		for k := range r.metrics {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s %g\n", k, r.metrics[k])
		}
		b.WriteString("```\n")
	}
	return b.String()
}

// replotCSV fits and draws the samples of an earlier run's CSV into
// cfg.out; ok is false when a checked slope is beyond its bound.
func replotCSV(path string, cfg config, log io.Writer) (ok bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	samples, err := readCSV(f)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if len(samples) == 0 {
		return false, fmt.Errorf("%s: no samples", path)
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return false, err
	}
	span := samples[len(samples)-1].elapsed - cfg.warmup
	check := cfg.check == "on" || cfg.check == "auto" && span >= cfg.minFit
	fits := fitAll(samples, cfg.warmup, cfg.bounds, check)
	if err := drawCharts(cfg.out, samples, cfg.warmup, fits); err != nil {
		return false, err
	}
	ok = true
	for _, f := range fits {
		fmt.Fprintln(log, f)
		ok = ok && f.ok
	}
	return ok, nil
}

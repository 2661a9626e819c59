// Command herald-soak is Herald's soak test (make soak). It starts a real
// Herald process with tokens required (--auth-hs256-secret-file), drives a
// steady mix of clients against it for a long time, samples the server's
// resources every --interval into a CSV, draws them as charts, and fails
// when a resource keeps growing after the warm-up: the least-squares slope
// of its post-warm-up samples beyond a stated bound.
//
// The client mix (see docs/soak.md for rates and the reasons for them):
//
//	publishers     gRPC Publish, gRPC PublishStream (its token expiring every
//	               8-20 s, so the stream ends with UNAUTHENTICATED and is
//	               reopened) and REST POST; REST DELETE of topic state;
//	               16 KiB events that only the slow readers subscribe to
//	schema pushes  herald.v1.SchemaService/RegisterSchemas and POST /v1/schemas
//	               in turn, every other one adding a field to a pushed type
//	churn          SSE subscribers that disconnect after 3-20 s and resume with
//	               Last-Event-ID (ids must keep increasing) or start afresh
//	expiring       SSE streams whose token expires after 3-10 s: Herald ends
//	               them, the expired token is refused (401), a fresh one resumes
//	slow           SSE readers with a 4 KiB receive buffer that stop reading
//	               for 20-45 s, then read again (and resume if Herald cut them)
//	vanishing      raw TCP SSE requests closed with a reset (RST), or left
//	               unread and then closed
//	snapshot       snapshot=true with a CEL filter: herald.synced must come,
//	               and every event must match the filter
//	grpc           herald.v1.SubscriberService/Subscribe, cancelled and resumed
//
// Run from the module root: go run ./cmd/herald-soak --help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// config is a soak run's settings; zero values are not valid, see
// defaultConfig.
type config struct {
	duration   time.Duration // the whole run, warm-up included
	warmup     time.Duration // samples before it are not fitted
	interval   time.Duration // between samples
	out        string        // directory of the CSV, the charts and the logs
	herald     string        // herald binary; empty: build ./cmd/herald
	heraldArgs []string      // extra `herald serve` flags (e.g. --broker redis)
	check      string        // slope check: auto, on or off
	minFit     time.Duration // auto checks slopes over at least this much
	bounds     bounds
	load       load
}

// load sets the client mix's sizes and rates.
type load struct {
	unaryRate, streamRate, restRate float64 // events per second per API
	bulkRate                        float64 // 16 KiB events per second, for the slow readers
	churn, expiring, slow, vanish   int     // concurrent clients of each kind
	snapshot, grpcSubs              int
	pushEvery, deleteEvery          time.Duration
}

func defaultConfig() config {
	return config{
		duration: 30 * time.Minute,
		interval: 10 * time.Second,
		out:      "soak-out",
		check:    "auto",
		minFit:   10 * time.Minute,
		bounds:   defaultBounds(),
		load: load{
			unaryRate: 8, streamRate: 8, restRate: 4, bulkRate: 8,
			churn: 16, expiring: 4, slow: 3, vanish: 3, snapshot: 4, grpcSubs: 2,
			pushEvery: 15 * time.Second, deleteEvery: 10 * time.Second,
		},
	}
}

// warmupFor is the default warm-up of a run of duration d: a sixth of it,
// at least 5 minutes when the run is long enough to afford them (the
// memory broker's retention fills in about 4 minutes at the default load;
// see docs/soak.md), and never more than a third of it.
func warmupFor(d time.Duration) time.Duration {
	w := max(d/6, 5*time.Minute)
	return min(w, d/3)
}

func main() {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("herald-soak", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: herald-soak [flags]\n\n"+
			"Runs a Herald server under a steady client mix for --duration, samples its RSS, Go heap,\n"+
			"goroutines, open file descriptors and open streams every --interval into <out>/soak.csv,\n"+
			"draws <out>/*.png, and exits 1 if a resource grows after --warmup faster than its bound.\n\n")
		fs.PrintDefaults()
	}
	fs.DurationVar(&cfg.duration, "duration", cfg.duration, "length of the run, warm-up included (e.g. 2m, 30m, 4h)")
	warmup := fs.Duration("warmup", 0, "samples before this are left out of the slope fit (default: a sixth of --duration, at least 5m, at most a third)")
	fs.DurationVar(&cfg.interval, "interval", cfg.interval, "time between samples")
	fs.StringVar(&cfg.out, "out", cfg.out, "directory for soak.csv, the charts, summary.md and herald.log")
	fs.StringVar(&cfg.herald, "herald", "", "herald binary to run (default: go build ./cmd/herald into --out)")
	heraldArgs := fs.String("herald-args", "", "extra `herald serve` flags, space-separated, e.g. \"--broker redis --redis-url redis://127.0.0.1:6379/0\"")
	fs.StringVar(&cfg.check, "check", cfg.check, "slope check: on, off, or auto (on when the fitted span is at least 10m)")
	fs.Float64Var(&cfg.bounds.heapMiBPerHour, "max-heap-growth", cfg.bounds.heapMiBPerHour, "bound on the Go heap's slope, MiB per hour")
	fs.Float64Var(&cfg.bounds.rssMiBPerHour, "max-rss-growth", cfg.bounds.rssMiBPerHour, "bound on RSS's slope, MiB per hour")
	fs.Float64Var(&cfg.bounds.goroutinesPerHour, "max-goroutine-growth", cfg.bounds.goroutinesPerHour, "bound on the goroutine count's slope, per hour")
	fs.Float64Var(&cfg.bounds.fdsPerHour, "max-fd-growth", cfg.bounds.fdsPerHour, "bound on the open file descriptors' slope, per hour")
	fs.Float64Var(&cfg.bounds.streamsPerHour, "max-stream-growth", cfg.bounds.streamsPerHour, "bound on the open streams' slope (herald_subscribers), per hour")
	replot := fs.String("replot", "", "`CSV` of an earlier run: fit and draw it again into --out (with this run's --duration, --warmup, --check and bounds) instead of running")
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "herald-soak: unexpected argument %q\n", fs.Arg(0))
		os.Exit(2)
	}
	cfg.heraldArgs = strings.Fields(*heraldArgs)
	cfg.warmup = *warmup
	if cfg.warmup == 0 {
		cfg.warmup = warmupFor(cfg.duration)
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(os.Stderr, "herald-soak: %v\n", err)
		os.Exit(2)
	}

	if *replot != "" {
		ok, err := replotCSV(*replot, cfg, os.Stdout)
		if err != nil {
			fmt.Fprintf(os.Stderr, "herald-soak: %v\n", err)
			os.Exit(1)
		}
		if !ok {
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, cfg, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "herald-soak: %v\n", err)
		os.Exit(1)
	}
	if !res.passed() {
		fmt.Fprintf(os.Stderr, "herald-soak: FAILED: %s\n", res.failures())
		os.Exit(1)
	}
}

func (c config) validate() error {
	switch {
	case c.duration < 10*time.Second:
		return fmt.Errorf("--duration %v: at least 10s", c.duration)
	case c.interval <= 0 || c.interval > c.duration/3:
		return fmt.Errorf("--interval %v: positive, and at most a third of --duration (%v)", c.interval, c.duration)
	case c.warmup < 0 || c.warmup >= c.duration:
		return fmt.Errorf("--warmup %v: at least 0 and shorter than --duration (%v)", c.warmup, c.duration)
	case c.check != "auto" && c.check != "on" && c.check != "off":
		return fmt.Errorf("--check %q: on, off or auto", c.check)
	case c.out == "":
		return errors.New("--out: a directory is needed")
	}
	return nil
}

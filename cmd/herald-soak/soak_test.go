package main

import (
	"bufio"
	"context"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestShortSoak runs the soak for 30 seconds against a real herald (built
// with the race detector when the test is), with the slope check off, and
// checks that every client activity happened, that Herald kept its
// promises (ids only go up across resumes, filters hold), that no data
// race was reported, and that the CSV and the charts were written.
func TestShortSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("the short soak takes about a minute; skipped with -short")
	}
	t.Parallel()
	cfg := defaultConfig()
	cfg.duration, cfg.warmup, cfg.interval = 30*time.Second, 10*time.Second, 2*time.Second
	cfg.check = "off"
	cfg.out = t.TempDir()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := runWith(ctx, cfg, testWriter{t}, raceEnabled)
	if err != nil {
		t.Fatal(err)
	}
	if res.exit != nil {
		t.Errorf("herald exited during the soak: %v", res.exit)
	}
	if res.races > 0 {
		t.Errorf("herald.log holds %d data race reports", res.races)
	}
	for _, c := range activityCounters {
		if res.counters[c] == 0 {
			t.Errorf("%s = 0: that activity never happened", c)
		}
	}
	for _, c := range violationCounters {
		if res.counters[c] != 0 {
			t.Errorf("%s = %d", c, res.counters[c])
		}
	}
	if n := res.counters[cErrors]; n > 0 {
		b, _ := os.ReadFile(filepath.Join(cfg.out, "errors.log"))
		t.Logf("%d unexpected errors (not failures by themselves):\n%s", n, b)
	}
	for _, f := range res.fits {
		if f.checked {
			t.Errorf("%s: slope checked in a run with --check off", f.name)
		}
	}

	f, err := os.Open(filepath.Join(cfg.out, "soak.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	samples, err := readCSV(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) < 10 {
		t.Errorf("soak.csv has %d samples, want at least 10 (30 s, one every 2 s)", len(samples))
	}
	var maxStreams, lastPublished float64
	for _, s := range samples {
		if s.rss <= 0 || s.heap <= 0 || s.goroutines <= 0 || s.fds <= 0 {
			t.Errorf("sample at %v has an empty reading: %+v", s.elapsed, s)
		}
		maxStreams = max(maxStreams, s.streams)
		lastPublished = s.published
	}
	if maxStreams < float64(cfg.load.churn) {
		t.Errorf("at most %v open streams sampled, want at least the %d churning subscribers", maxStreams, cfg.load.churn)
	}
	if lastPublished == 0 {
		t.Error("the server counted no publishes")
	}
	for _, s := range allSeries {
		checkPNG(t, filepath.Join(cfg.out, s.file))
	}
	// --replot draws the same from the CSV alone.
	rc := cfg
	rc.out = filepath.Join(cfg.out, "replot")
	if _, err := replotCSV(f.Name(), rc, io.Discard); err != nil {
		t.Fatalf("replot: %v", err)
	}
	again := fitAll(samples, cfg.warmup, cfg.bounds, false)
	for i, fa := range again {
		// The CSV rounds times to the millisecond: a slope near zero may
		// move by a hair of its bound.
		if fr := res.fits[i]; math.Abs(fa.slope-fr.slope) > 1e-3*math.Abs(fr.slope)+1e-3*fr.bound || fa.end != fr.end {
			t.Errorf("%s from the CSV: slope %v, end %v; the run had %v, %v", fa.name, fa.slope, fa.end, fr.slope, fr.end)
		}
		checkPNG(t, filepath.Join(rc.out, fa.file))
	}
	sum, err := os.ReadFile(filepath.Join(cfg.out, "summary.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(sum), "| Goroutines (goroutines) |") {
		t.Errorf("summary.md has no row for goroutines:\n%s", sum)
	}
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	c, err := png.DecodeConfig(f)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if c.Width < 400 || c.Height < 150 {
		t.Errorf("%s is %d×%d pixels", path, c.Width, c.Height)
	}
}

// testWriter sends the soak's progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func TestFitLine(t *testing.T) {
	t.Parallel()
	xs := []float64{0, 1, 2, 3, 4}
	ys := []float64{1, 3.1, 4.9, 7, 9}
	slope, icpt := fitLine(xs, ys)
	if math.Abs(slope-2) > 0.05 || math.Abs(icpt-1) > 0.1 {
		t.Errorf("fitLine = %v, %v; want about 2, 1", slope, icpt)
	}
	if s, _ := fitLine([]float64{1, 1}, []float64{1, 2}); !math.IsNaN(s) {
		t.Errorf("fitLine over one x = %v, want NaN", s)
	}
	if s, _ := fitLine([]float64{1}, []float64{1}); !math.IsNaN(s) {
		t.Errorf("fitLine of one point = %v, want NaN", s)
	}
}

// TestFitAll checks the verdicts: growth after the warm-up beyond a bound
// fails, growth during the warm-up does not count, and noise around a
// level passes.
func TestFitAll(t *testing.T) {
	t.Parallel()
	warmup := 5 * time.Minute
	mk := func(heap func(m float64) float64) []sample {
		var out []sample
		for i := range 181 { // 30 min every 10 s
			d := time.Duration(i) * 10 * time.Second
			m := d.Minutes()
			out = append(out, sample{elapsed: d, rss: 60 * mib, heap: heap(m) * mib, goroutines: 90 + float64(i%7), fds: 46, streams: 32})
		}
		return out
	}
	b := defaultBounds()
	for _, tc := range []struct {
		name string
		heap func(m float64) float64
		ok   bool
	}{
		{"flat with noise", func(m float64) float64 { return 20 + math.Sin(m*7) }, true},
		{"grows only during the warm-up", func(m float64) float64 { return 10 + 2*min(m, 5) }, true},
		{"leaks 24 MiB/h", func(m float64) float64 { return 20 + 24*m/60 + 0.5*math.Sin(m*7) }, false},
	} {
		fits := fitAll(mk(tc.heap), warmup, b, true)
		for _, f := range fits {
			want := true
			if f.file == "heap.png" {
				want = tc.ok
			}
			if f.ok != want {
				t.Errorf("%s: %s: ok = %v, want %v (%v)", tc.name, f.name, f.ok, want, f)
			}
		}
	}
	for _, f := range fitAll(mk(func(float64) float64 { return 10 }), warmup, b, false) {
		if f.checked || !f.ok {
			t.Errorf("unchecked fit %v: checked %v, ok %v", f.name, f.checked, f.ok)
		}
	}
}

func TestSSEStream(t *testing.T) {
	t.Parallel()
	in := ": hello\nretry: 2000\n\nid: e-1\nevent: soak.v1.Tick\ndata: {\"n\":1,\ndata: \"region\":\"eu\"}\n\n" +
		"data: plain\n\n: token expired, reconnect with a fresh one\nretry: 0\n\n"
	st := &sseStream{body: io.NopCloser(nil), br: bufio.NewReader(strings.NewReader(in))}
	want := []sseEvent{{"e-1", "soak.v1.Tick", "{\"n\":1,\n\"region\":\"eu\"}"}, {"", "message", "plain"}}
	for _, w := range want {
		ev, err := st.next()
		if err != nil || ev != w {
			t.Fatalf("next = %+v, %v; want %+v", ev, err, w)
		}
	}
	if _, err := st.next(); err != io.EOF {
		t.Errorf("at the end: %v, want io.EOF", err)
	}
	if st.retry != "0" {
		t.Errorf("retry = %q, want the last one, 0", st.retry)
	}
}

func TestCursor(t *testing.T) {
	t.Parallel()
	var c cursor
	for _, tc := range []struct {
		id    string
		equal bool
		ok    bool
	}{
		{"ab-5", false, true},
		{"ab-6", false, true},
		{"ab-6", false, false}, // a repeat
		{"ab-6", true, true},   // herald.synced at the last event's position
		{"ab-4", false, false}, // back in time
		{"cd-1", false, true},  // another epoch starts afresh
		{"nonsense", false, false},
	} {
		if ok, why := c.see(tc.id, tc.equal); ok != tc.ok {
			t.Errorf("see(%q, %v) = %v (%s), want %v", tc.id, tc.equal, ok, why, tc.ok)
		}
	}
}

func TestWarmupFor(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]time.Duration{
		30 * time.Minute: 5 * time.Minute,
		4 * time.Hour:    40 * time.Minute,
		2 * time.Minute:  40 * time.Second,
		10 * time.Minute: 200 * time.Second,
	} {
		if got := warmupFor(d); got != want {
			t.Errorf("warmupFor(%v) = %v, want %v", d, got, want)
		}
	}
}

func TestMinuteTicks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		lo, hi float64
		want   string
	}{
		{0, 30, "0 5 10 15 20 25 30"},
		{0, 0.5, "0 0.1 0.2 0.3 0.4 0.5"},
		{0, 240, "0 30 60 90 120 150 180 210 240"},
		{1.2, 9, "2 3 4 5 6 7 8 9"},
	} {
		var got []string
		for _, tk := range minuteTicks(tc.lo, tc.hi) {
			got = append(got, tk.Label)
		}
		if s := strings.Join(got, " "); s != tc.want {
			t.Errorf("minuteTicks(%v, %v) = %s, want %s", tc.lo, tc.hi, s, tc.want)
		}
	}
}

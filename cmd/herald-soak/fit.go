package main

import (
	"fmt"
	"math"
	"time"
)

// bounds are the largest post-warm-up slopes a run passes with, per hour.
// docs/soak.md gives the reasoning behind each default.
type bounds struct {
	heapMiBPerHour    float64
	rssMiBPerHour     float64
	goroutinesPerHour float64
	fdsPerHour        float64
	streamsPerHour    float64
}

func defaultBounds() bounds {
	return bounds{heapMiBPerHour: 16, rssMiBPerHour: 32, goroutinesPerHour: 100, fdsPerHour: 50, streamsPerHour: 30}
}

// A series is one sampled resource.
type series struct {
	name, file string // title, and the chart's file name
	unit       string // of the values as charted and bounded
	scale      float64
	value      func(sample) float64 // in bytes or counts
	bound      func(bounds) float64 // per hour, in unit
}

const mib = 1 << 20

var allSeries = []series{
	{"RSS", "rss.png", "MiB", mib, func(s sample) float64 { return s.rss }, func(b bounds) float64 { return b.rssMiBPerHour }},
	{"Go heap in use (after GC)", "heap.png", "MiB", mib, func(s sample) float64 { return s.heap }, func(b bounds) float64 { return b.heapMiBPerHour }},
	{"Goroutines", "goroutines.png", "goroutines", 1, func(s sample) float64 { return s.goroutines }, func(b bounds) float64 { return b.goroutinesPerHour }},
	{"Open file descriptors", "fds.png", "fds", 1, func(s sample) float64 { return s.fds }, func(b bounds) float64 { return b.fdsPerHour }},
	{"Open streams (herald_subscribers)", "streams.png", "streams", 1, func(s sample) float64 { return s.streams }, func(b bounds) float64 { return b.streamsPerHour }},
}

// fitLine fits y = a + b·x by least squares; it returns b and a. With
// fewer than two distinct x it returns NaNs.
func fitLine(xs, ys []float64) (slope, intercept float64) {
	n := float64(len(xs))
	if len(xs) < 2 || len(xs) != len(ys) {
		return math.NaN(), math.NaN()
	}
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx, my = mx/n, my/n
	var sxy, sxx float64
	for i := range xs {
		dx := xs[i] - mx
		sxy += dx * (ys[i] - my)
		sxx += dx * dx
	}
	if sxx == 0 {
		return math.NaN(), math.NaN()
	}
	slope = sxy / sxx
	return slope, my - slope*mx
}

// A fit is one series' figures over a run.
type fit struct {
	series
	start, end, peak float64 // in unit: the first sample, the last, the largest
	slope, intercept float64 // per hour, in unit, over the post-warm-up samples; intercept at 0 h
	bound            float64
	checked, ok      bool
}

// fitAll computes each series' figures; slopes are fitted over the samples
// at or after warmup and checked against b when check is set.
func fitAll(samples []sample, warmup time.Duration, b bounds, check bool) []fit {
	var out []fit
	for _, s := range allSeries {
		f := fit{series: s, bound: s.bound(b), checked: check, ok: true}
		var xs, ys []float64
		for i, sm := range samples {
			v := s.value(sm) / s.scale
			if i == 0 {
				f.start = v
			}
			f.end, f.peak = v, max(f.peak, v)
			if sm.elapsed >= warmup {
				xs = append(xs, sm.elapsed.Hours())
				ys = append(ys, v)
			}
		}
		f.slope, f.intercept = fitLine(xs, ys)
		if check && !(f.slope <= f.bound) { // a NaN slope fails too
			f.ok = false
		}
		out = append(out, f)
	}
	return out
}

func (f fit) String() string {
	verdict := "not checked"
	if f.checked {
		verdict = "ok"
		if !f.ok {
			verdict = "FAIL"
		}
	}
	return fmt.Sprintf("%-34s start %9.2f  end %9.2f  peak %9.2f %-10s  slope %+9.2f %s/h (bound %g): %s",
		f.name, f.start, f.end, f.peak, f.unit, f.slope, f.unit, f.bound, verdict)
}

package main

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// drawCharts writes one PNG per series into dir: the samples against
// minutes, the warm-up's end as a vertical line, and the fitted line over
// the samples after it.
func drawCharts(dir string, samples []sample, warmup time.Duration, fits []fit) error {
	for _, f := range fits {
		if err := drawChart(filepath.Join(dir, f.file), samples, warmup, f); err != nil {
			return fmt.Errorf("chart %s: %w", f.file, err)
		}
	}
	return nil
}

func drawChart(path string, samples []sample, warmup time.Duration, f fit) error {
	p := plot.New()
	p.Title.Text = f.name
	if !math.IsNaN(f.slope) {
		p.Title.Text += fmt.Sprintf(" — slope after warm-up %+.2f %s/h (bound %g)", f.slope, f.unit, f.bound)
	}
	p.X.Label.Text = "minutes"
	p.X.Tick.Marker = plot.TickerFunc(minuteTicks)
	p.Y.Label.Text = f.unit
	p.Y.Min = 0
	p.Add(plotter.NewGrid())

	pts := make(plotter.XYs, len(samples))
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, s := range samples {
		pts[i].X = s.elapsed.Minutes()
		pts[i].Y = f.value(s) / f.scale
		lo, hi = min(lo, pts[i].Y), max(hi, pts[i].Y)
	}
	line, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	line.Color = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	line.Width = vg.Points(1.2)
	p.Add(line)
	p.Legend.Add("sampled", line)

	if len(samples) > 0 {
		top := max(hi*1.1, 1)
		wl, err := plotter.NewLine(plotter.XYs{{X: warmup.Minutes(), Y: 0}, {X: warmup.Minutes(), Y: top}})
		if err != nil {
			return err
		}
		wl.Color = color.Gray{Y: 120}
		wl.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(wl)
		p.Legend.Add("end of warm-up", wl)
		p.Y.Max = top
	}
	if !math.IsNaN(f.slope) {
		last := samples[len(samples)-1].elapsed
		at := func(d time.Duration) plotter.XY {
			return plotter.XY{X: d.Minutes(), Y: f.intercept + f.slope*d.Hours()}
		}
		fl, err := plotter.NewLine(plotter.XYs{at(warmup), at(last)})
		if err != nil {
			return err
		}
		fl.Color = color.RGBA{R: 214, G: 39, B: 40, A: 255}
		fl.Width = vg.Points(1.5)
		p.Add(fl)
		p.Legend.Add("least-squares fit", fl)
	}
	// Bottom right: the axis starts at zero, so the lines run above it.
	p.Legend.Top = false
	p.Legend.Left = false
	return p.Save(8*vg.Inch, 3.5*vg.Inch, path)
}

// minuteTicks labels the time axis at the smallest round step (from 6
// seconds to 4 hours) that gives at most ten labels.
func minuteTicks(lo, hi float64) []plot.Tick {
	var step float64
	for _, s := range []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 240} {
		step = s
		if (hi-lo)/s <= 10 {
			break
		}
	}
	var ticks []plot.Tick
	for i := math.Ceil(lo / step); i*step <= hi; i++ {
		v := math.Round(i*step*100) / 100 // 0.3, not 0.30000000000000004
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
	}
	return ticks
}

package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// A scraper reads a Herald server's own figures: its /metrics, and its Go
// heap after a collection forced through its debug listener. Only Herald
// has them; for a floor every reading is unknown.
type scraper struct {
	client      *http.Client
	metrics, gc string // URLs; empty when the server has none
}

func newScraper(srv *server) *scraper {
	s := &scraper{client: &http.Client{Timeout: 10 * time.Second}}
	if srv.kind == "herald" {
		s.metrics = "http://" + srv.http + "/metrics"
		if srv.debug != "" {
			s.gc = "http://" + srv.debug + "/debug/pprof/heap?gc=1"
		}
	}
	return s
}

// scrape returns the server's metrics, or nil when it has none or they
// cannot be read.
func (s *scraper) scrape() map[string]float64 {
	if s.metrics == "" {
		return nil
	}
	resp, err := s.client.Get(s.metrics)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	m, err := parseMetrics(resp.Body)
	if err != nil {
		return nil
	}
	return m
}

// heap returns the server's go_memstats_heap_inuse_bytes, or 0 when it is
// not known. With gc set it forces a collection first, so that the figure
// is the live heap (with its spans' free slots), not garbage waiting for a
// collection; it is 0 when that cannot be done, since a reading with
// garbage in it cannot be compared with one without.
func (s *scraper) heap(gc bool) int64 {
	if gc {
		if s.gc == "" {
			return 0
		}
		resp, err := s.client.Get(s.gc)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return int64(s.scrape()["go_memstats_heap_inuse_bytes"])
}

// parseMetrics reads the Prometheus text format: each sample's name, with
// its labels exactly as written, to its value. Comments and timestamps are
// skipped.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	m := make(map[string]float64)
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, " {")
		if end < 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		}
		if line[end] == '{' {
			closing := strings.LastIndexByte(line, '}')
			if closing < end {
				return nil, fmt.Errorf("metrics: unterminated labels in %q", line)
			}
			end = closing + 1
		}
		fields := strings.Fields(line[end:])
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: %q: %w", line, err)
		}
		m[line[:end]] = v
	}
	return m, sc.Err()
}

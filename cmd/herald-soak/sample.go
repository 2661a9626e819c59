package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// A sample is one reading of the server's resources.
type sample struct {
	elapsed    time.Duration // since the clients started
	rss        float64       // bytes, VmRSS of /proc/PID/status
	heap       float64       // bytes, go_memstats_heap_inuse_bytes after a forced collection
	goroutines float64       // go_goroutines
	fds        float64       // entries of /proc/PID/fd
	streams    float64       // herald_subscribers: open SSE streams and gRPC Subscribe calls
	published  float64       // herald_publish_total{result="ok"}, all transports
	delivered  float64       // herald_events_delivered_total
	connects   float64       // SSE streams the clients opened (their counter)
}

var csvHeader = []string{"elapsed_s", "rss_bytes", "heap_inuse_bytes", "goroutines", "fds", "open_streams", "published_total", "delivered_total", "sse_connects_total"}

func (s sample) record() []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	return []string{strconv.FormatFloat(s.elapsed.Seconds(), 'f', 3, 64), f(s.rss), f(s.heap), f(s.goroutines), f(s.fds), f(s.streams), f(s.published), f(s.delivered), f(s.connects)}
}

// readCSV reads a file written by the sampler.
func readCSV(r io.Reader) ([]sample, error) {
	rows, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 || strings.Join(rows[0], ",") != strings.Join(csvHeader, ",") {
		return nil, fmt.Errorf("soak CSV: want the header %s", strings.Join(csvHeader, ","))
	}
	var out []sample
	for i, row := range rows[1:] {
		v := make([]float64, len(row))
		for j, c := range row {
			if v[j], err = strconv.ParseFloat(c, 64); err != nil {
				return nil, fmt.Errorf("soak CSV line %d: %w", i+2, err)
			}
		}
		out = append(out, sample{elapsed: time.Duration(v[0] * float64(time.Second)), rss: v[1], heap: v[2], goroutines: v[3],
			fds: v[4], streams: v[5], published: v[6], delivered: v[7], connects: v[8]})
	}
	return out, nil
}

// sampler reads the server's figures.
type sampler struct {
	srv    *server
	st     *stats
	client *http.Client
}

// take reads one sample. The heap is read after a collection forced
// through the debug listener (/debug/pprof/heap?gc=1), so that it is the
// live heap and not garbage waiting to be collected: otherwise its
// sawtooth would swamp any trend.
func (s *sampler) take(ctx context.Context, elapsed time.Duration) (sample, error) {
	out := sample{elapsed: elapsed, connects: float64(s.st.get(cSSEConnects))}
	if err := s.get(ctx, "http://"+s.srv.debug+"/debug/pprof/heap?gc=1", nil); err != nil {
		return out, fmt.Errorf("forcing a collection: %w", err)
	}
	var m map[string]float64
	if err := s.get(ctx, "http://"+s.srv.http+"/metrics", func(r io.Reader) (err error) { m, err = parseMetrics(r); return err }); err != nil {
		return out, fmt.Errorf("reading /metrics: %w", err)
	}
	var err error
	if out.rss, err = procRSS(s.srv.pid); err != nil {
		return out, err
	}
	if out.fds, err = procFDs(s.srv.pid); err != nil {
		return out, err
	}
	out.heap = m["go_memstats_heap_inuse_bytes"]
	out.goroutines = m["go_goroutines"]
	out.streams = m["herald_subscribers"]
	out.delivered = m["herald_events_delivered_total"]
	for k, v := range m {
		if strings.HasPrefix(k, "herald_publish_total{") && strings.Contains(k, `result="ok"`) {
			out.published += v
		}
	}
	for _, k := range []string{"go_memstats_heap_inuse_bytes", "go_goroutines", "herald_subscribers"} {
		if _, ok := m[k]; !ok {
			return out, fmt.Errorf("/metrics has no %s", k)
		}
	}
	return out, nil
}

func (s *sampler) get(ctx context.Context, u string, f func(io.Reader) error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	if f == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return f(resp.Body)
}

// procRSS returns a process's resident set size from /proc/PID/status.
func procRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", v, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// procFDs counts a process's open file descriptors.
func procFDs(pid int) (float64, error) {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	return float64(len(es)), nil
}

// parseMetrics reads the Prometheus text format: each sample's name, with
// its labels exactly as written, to its value.
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

// procCPU returns a process's user and system CPU time from
// /proc/PID/stat, in clock ticks of 10 ms (USER_HZ on Linux).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields start after the command name's closing parenthesis: state is
	// rest[0], utime and stime (fields 14 and 15) rest[11] and rest[12].
	i := strings.LastIndexByte(string(b), ')')
	rest := strings.Fields(string(b[i+1:]))
	if i < 0 || len(rest) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, err1 := strconv.ParseInt(rest[11], 10, 64)
	st, err2 := strconv.ParseInt(rest[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime or stime", pid)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

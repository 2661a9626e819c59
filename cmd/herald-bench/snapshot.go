package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"text/tabwriter"
	"time"
)

// snapshot is the snapshot scenario: one retained event on each of
// --snapshot-topics topics, then --snapshot-subs subscribes, one after
// another, with snapshot=true over all of them, each read to its
// herald.synced. It reports the time from request to herald.synced and the
// server's CPU per snapshot. Herald alone: the floor keeps no state.
func (b *bench) snapshot() {
	title := fmt.Sprintf("9 snapshot of %d topics", b.cfg.snapshotTopics)
	b.runEach(title, []string{"herald"}, func(string) (*result, error) { return b.runSnapshot(title) },
		func(kind string) *result {
			return &result{Scenario: "snapshot", Title: title, Server: kind, Topics: b.cfg.snapshotTopics}
		})
}

func (b *bench) runSnapshot(title string) (*result, error) {
	cfg := b.cfg
	r := &result{Scenario: "snapshot", Title: title, Server: "herald", Conns: cfg.snapshotSubs, Topics: cfg.snapshotTopics}
	srv, err := b.startHerald("snapshot", "--max-snapshot-topics", fmt.Sprint(cfg.snapshotTopics))
	if err != nil {
		return nil, err
	}
	defer srv.stop()

	names := topicNames(cfg.snapshotTopics)
	s, err := b.newGRPCSink(srv.grpc, names, slices.Repeat([]string{padding(cfg.payload)}, len(names)))
	if err != nil {
		return nil, err
	}
	defer s.close()
	for i := range names {
		if err := s.send(i, 1); err != nil {
			return nil, fmt.Errorf("publishing: %w", err)
		}
	}
	if refused, err := s.finish(time.Minute); err != nil || refused > 0 {
		return nil, fmt.Errorf("publishing one event to each topic: %d refused, %v", refused, err)
	}
	<-time.After(cfg.settle)
	r.RSSBefore = srv.rss()

	var lat []int64
	a := snapCPU(srv.pid)
	for range cfg.snapshotSubs {
		start := time.Now()
		n, size, err := readSnapshot(srv.http, "bench.>")
		if err != nil {
			return nil, err
		}
		if n != cfg.snapshotTopics {
			return nil, fmt.Errorf("a snapshot held %d events, want one per topic, %d", n, cfg.snapshotTopics)
		}
		lat = append(lat, time.Since(start).Nanoseconds())
		r.Deliveries += int64(n)
		r.BulkSize = size
	}
	z := snapCPU(srv.pid)
	b.cpu(r, a, z)
	r.RSSPeak = srv.rss()
	r.CPUPerRequest = r.ServerCPU / float64(cfg.snapshotSubs) * 1e6
	r.P50, r.P99, r.P999, r.Max = percentiles(lat)
	return r, nil
}

// readSnapshot subscribes to pattern with snapshot=true and reads the
// stream up to its herald.synced event. It returns how many events came
// before it and how many bytes the snapshot took.
func readSnapshot(httpAddr, pattern string) (events, size int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q := url.Values{"topic": {pattern}, "snapshot": {"true"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/v1/events?"+q.Encode(), nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, 0, fmt.Errorf("snapshot: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return events, size, fmt.Errorf("snapshot: the stream ended after %d events: %w", events, err)
		}
		size += len(line)
		switch {
		case bytes.Equal(line, []byte("event: herald.synced\n")):
			return events, size, nil
		case bytes.HasPrefix(line, []byte("event: ")):
			events++
		}
	}
}

// printSnapshot prints the snapshot scenario's table, if it ran.
func (b *bench) printSnapshot(w io.Writer) {
	x := b.find("snapshot", "herald")
	if x == nil {
		return
	}
	fmt.Fprintf(w, "\nSnapshot (scenario 9): %d subscribes, one after another, with snapshot=true over %d topics with one retained event each;\n", x.Conns, x.Topics)
	fmt.Fprintln(w, "time from the request to herald.synced, and the server's CPU per snapshot")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\ttopics\tsnapshots\tp50\tp99\tmax\tCPU/snapshot\tCPU/topic\tbytes/snapshot\tRSS MiB before→after\tother cores\tnote\t")
	fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%.2fms\t%.2fµs\t%d\t%s→%s\t%.2f\t%s\t\n", x.Title, x.Topics, x.Conns, ms(x.P50), ms(x.P99), ms(x.Max),
		x.CPUPerRequest/1e3, x.CPUPerRequest/float64(max(x.Topics, 1)), x.BulkSize, mib(x.RSSBefore), mib(x.RSSPeak), x.OtherCores, x.Note)
	tw.Flush()
}

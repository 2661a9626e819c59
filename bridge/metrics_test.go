package bridge

import (
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

func TestCountPublish(t *testing.T) {
	t.Parallel()
	m := newMetrics()
	for range 3 {
		m.countPublish(transportStream, "ok")
	}
	m.countPublish(transportStream, "duplicate")
	m.countPublish(transportGRPC, "ok")
	m.countPublish(transportREST, "InvalidArgument")
	m.countPublish(transportREST, "InvalidArgument")
	for _, tt := range []struct {
		transport, result string
		want              float64
	}{
		{"grpc_stream", "ok", 3},
		{"grpc_stream", "duplicate", 1},
		{"grpc", "ok", 1},
		{"grpc", "duplicate", 0},
		{"rest", "InvalidArgument", 2},
		{"rest", "ok", 0},
	} {
		var out dto.Metric
		if err := m.published.WithLabelValues(tt.transport, tt.result).Write(&out); err != nil {
			t.Fatal(err)
		}
		if got := out.GetCounter().GetValue(); got != tt.want {
			t.Errorf("herald_publish_total{transport=%q,result=%q} = %v, want %v", tt.transport, tt.result, got, tt.want)
		}
	}
}

// Every reason a stream can end with is exported from the start (so that
// rate() sees its first increment) and named in the metric's help: the
// reasons are a typed table, so the code cannot emit one that is not.
func TestStreamEndReasonsAreDocumentedAndExported(t *testing.T) {
	t.Parallel()
	m := newMetrics()
	families, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var family *dto.MetricFamily
	for _, f := range families {
		if f.GetName() == "herald_sse_streams_ended_total" {
			family = f
		}
	}
	if family == nil {
		t.Fatal("herald_sse_streams_ended_total is not exported before any stream ended")
	}
	exported := map[string]bool{}
	for _, mt := range family.GetMetric() {
		for _, l := range mt.GetLabel() {
			if l.GetName() == "reason" {
				exported[l.GetValue()] = true
			}
		}
	}
	for r := range numEndReasons {
		if !exported[r.String()] {
			t.Errorf("reason %q is not exported", r)
		}
		if !strings.Contains(family.GetHelp(), r.String()+" (") {
			t.Errorf("the help %q does not explain reason %q", family.GetHelp(), r)
		}
	}
	if len(exported) != int(numEndReasons) {
		t.Errorf("exported reasons %v, want exactly the %d of endReasons", exported, numEndReasons)
	}
}

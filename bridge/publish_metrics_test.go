package bridge

import (
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

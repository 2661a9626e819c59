package bridge

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus metrics. Labels never carry topic
// names, tokens or other unbounded or secret values.
type metrics struct {
	registry     *prometheus.Registry
	published    *prometheus.CounterVec // by transport and result
	publishTime  prometheus.Histogram
	delivered    prometheus.Counter
	replayed     prometheus.Counter
	gaps         prometheus.Counter
	subscribers  prometheus.Gauge
	streams      *prometheus.CounterVec // ended streams by reason
	ended        [numEndReasons]prometheus.Counter
	slowDrops    prometheus.Counter
	stuckWrites  prometheus.Counter
	refused      *prometheus.CounterVec // refused subscriptions by status
	renderings   prometheus.Counter
	filterErrors prometheus.Counter
	snapshots    prometheus.Counter

	// accepted caches the children of published for accepted publishes,
	// by transport, ok and duplicate: looked up once, not per publish.
	accepted [numTransports][2]atomic.Pointer[prometheus.Counter]
}

// An endReason is why an SSE stream ended: herald_sse_streams_ended_total's
// reason label. The label values and the metric's help come from endReasons,
// so a reason the code can emit is always documented and always exported.
type endReason uint8

const (
	endClient   endReason = iota // the client went away
	endSlow                      // too slow: its queue overflowed or a write timed out
	endWrite                     // a write failed: the connection broke
	endExpired                   // its token expired
	endShutdown                  // the server shut down
	endRevoked                   // its token's subject was revoked
	numEndReasons
)

var endReasons = [numEndReasons]struct{ label, help string }{
	endClient:   {"client", "the client went away"},
	endSlow:     {"slow", "too slow: its queue overflowed, a write took longer than the write timeout, or this node fell so far behind the broker that retention removed events of its topic"},
	endWrite:    {"write", "a write failed: the connection broke"},
	endExpired:  {"expired", "its token expired"},
	endShutdown: {"shutdown", "the server shut down"},
	endRevoked:  {"revoked", "its token's subject was revoked"},
}

func (r endReason) String() string { return endReasons[r].label }

func endReasonsHelp() string {
	parts := make([]string, len(endReasons))
	for i, r := range endReasons {
		parts[i] = r.label + " (" + r.help + ")"
	}
	return strings.Join(parts, ", ")
}

// A transport is how a publish arrived: herald_publish_total's transport
// label.
type transport uint8

const (
	transportGRPC transport = iota
	transportStream
	transportREST
	numTransports
)

var transportNames = [numTransports]string{"grpc", "grpc_stream", "rest"}

func (t transport) String() string { return transportNames[t] }

// countPublish counts a publish by transport and result: "ok",
// "duplicate" or an error's gRPC code.
func (m *metrics) countPublish(t transport, result string) {
	i := 0
	switch result {
	case "ok":
	case "duplicate":
		i = 1
	default:
		m.published.WithLabelValues(t.String(), result).Inc()
		return
	}
	slot := &m.accepted[t][i]
	if c := slot.Load(); c != nil {
		(*c).Inc()
		return
	}
	c := m.published.WithLabelValues(t.String(), result)
	slot.Store(&c)
	c.Inc()
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_publish_total",
			Help: "Publish requests by transport (grpc, grpc_stream, rest) and result (ok, duplicate, or the gRPC code of the error).",
		}, []string{"transport", "result"}),
		publishTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_publish_duration_seconds",
			Help:    "Time from receiving a publish request to the broker accepting it.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 4, 9),
		}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_events_delivered_total",
			Help: "Events delivered to subscribers (one per event per subscriber), live and replayed: frames written to SSE streams and messages sent to gRPC Subscribe calls.",
		}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_events_replayed_total",
			Help: "Events read from the broker's history for resuming subscribers (SSE streams and gRPC Subscribe calls).",
		}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_resume_gaps_total",
			Help: "Resumptions whose Last-Event-ID reached back further than the retained history (the client was sent a herald.gap event).",
		}),
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_subscribers",
			Help: "Open subscriptions on this node: SSE streams and gRPC Subscribe calls.",
		}),
		streams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_sse_streams_ended_total",
			Help: "SSE streams that ended, by reason: " + endReasonsHelp() + ".",
		}, []string{"reason"}),
		slowDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_sse_slow_subscribers_dropped_total",
			Help: "Subscribers whose queue overflowed; each was disconnected to resume with Last-Event-ID.",
		}),
		stuckWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_sse_stuck_writes_total",
			Help: "Writes to HTTP/2 or TLS streams that waited longer than 10ms for their client (which withheld flow-control window or read too slowly); each such stream was given a goroutine of its own, and the other streams went on.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_sse_refused_total",
			Help: "SSE subscription requests refused before the stream started, by HTTP status.",
		}, []string{"status"}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_snapshots_total",
			Help: "Subscriptions that started with a snapshot of their topics' latest events (snapshot=true), SSE and gRPC.",
		}),
		filterErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_filter_errors_total",
			Help: "Events dropped for a subscription because its filter failed on them (a missing field, a payload of another type, the cost limit), counted once per event and distinct filter.",
		}),
		renderings: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_render_encodings_total",
			Help: "Events encoded in a non-default JSON rendering (each distinct rendering of an event is encoded once, whatever the number of its subscribers).",
		}),
	}
	for r := range numEndReasons {
		m.ended[r] = m.streams.WithLabelValues(r.String())
	}
	m.registry.MustRegister(
		m.published, m.publishTime, m.delivered, m.replayed, m.gaps, m.subscribers,
		m.streams, m.slowDrops, m.stuckWrites, m.refused, m.renderings, m.filterErrors, m.snapshots,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// An EvictionCounter is a Broker whose retention has an overall cap (the
// memory broker's --max-retained-bytes): it counts the events the cap
// removed, beyond what count and age retention remove.
type EvictionCounter interface {
	Evicted() (events, bytes uint64)
}

// watchBroker exports what the broker counts of itself.
func (m *metrics) watchBroker(b broker.Broker) {
	if ec, ok := b.(EvictionCounter); ok {
		m.registry.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "herald_broker_evicted_events_total",
				Help: "Retained events removed to keep the broker's history under its byte cap (--max-retained-bytes), oldest first; resumes from before them get herald.gap.",
			}, func() float64 { n, _ := ec.Evicted(); return float64(n) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "herald_broker_evicted_bytes_total",
				Help: "Bytes of the events counted by herald_broker_evicted_events_total.",
			}, func() float64 { _, n := ec.Evicted(); return float64(n) }),
		)
	}
}

// watchServer exports the server's readiness, its broker's health and its
// connection limit, for alerts: each is read when scraped.
func (m *metrics) watchServer(ready func() bool, b broker.Broker, maxConnections int) {
	hc, _ := b.(broker.HealthChecker)
	limit := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "herald_max_connections",
		Help: "The most concurrent streams (SSE and gRPC Subscribe) this node accepts (--max-connections); 0: no limit. Compare with herald_subscribers.",
	})
	limit.Set(float64(maxConnections))
	m.registry.MustRegister(limit,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_ready",
			Help: "1 while the server serves and is not shutting down, else 0 (GET /readyz also checks the broker: herald_broker_up).",
		}, func() float64 { return boolGauge(ready()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_broker_up",
			Help: "1 when the broker answers its health check (as GET /readyz asks it, within 2s), else 0; always 1 for the memory broker.",
		}, func() float64 {
			if hc == nil {
				return 1
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return boolGauge(hc.Healthy(ctx) == nil)
		}),
	)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

package main

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Names of the activity counters. Each counts one thing a client did or
// saw; the short soak's test checks that each activity happened.
const (
	cPublishGRPC      = "publish_grpc"          // Publish acknowledged with an id
	cPublishStream    = "publish_stream"        // PublishStream answers with an id
	cPublishREST      = "publish_rest"          // POST /v1/topics/{topic}/events answered 200
	cDeleteState      = "delete_state"          // DELETE /v1/topics/{topic}/state answered 200
	cStreamExpired    = "publish_stream_expiry" // PublishStream ended with UNAUTHENTICATED as its token expired
	cSchemaGRPC       = "schema_push_grpc"      // RegisterSchemas succeeded
	cSchemaREST       = "schema_push_rest"      // POST /v1/schemas answered 200
	cSchemaChanged    = "schema_push_changed"   // a push that added or updated a type
	cSSEConnects      = "sse_connects"          // SSE streams opened (200)
	cSSEEvents        = "sse_events"            // events received over SSE
	cResumes          = "resumes"               // streams reopened with Last-Event-ID
	cResumeGaps       = "resume_gaps"           // resumes answered with herald.gap
	cTokenExpiries    = "token_expiries"        // SSE streams Herald ended at their token's expiry (retry: 0)
	cExpiredRefused   = "expired_token_refused" // reconnects with the expired token answered 401
	cSlowStalls       = "slow_stalls"           // slow readers that stopped reading
	cSlowCut          = "slow_cut"              // stalled readers that found their stream ended
	cVanishRST        = "vanish_rst"            // connections closed with a TCP reset
	cVanishClose      = "vanish_close"          // connections closed mid-stream, unread data left
	cSnapshots        = "snapshots"             // snapshot streams that got herald.synced
	cFilterEvents     = "filter_events"         // events received on filtered streams
	cGRPCSubscribes   = "grpc_subscribes"       // gRPC Subscribe calls opened
	cGRPCEvents       = "grpc_events"           // events received over gRPC Subscribe
	cOrderViolations  = "order_violations"      // an id not above the one before it on a stream, across resumes
	cFilterViolations = "filter_violations"     // an event a stream's filter should have kept out
	cErrors           = "errors"                // unexpected errors (answers, connections); see errors.log
)

// activityCounters are those that must be above zero after any run long
// enough for each client to act at least once.
var activityCounters = []string{
	cPublishGRPC, cPublishStream, cPublishREST, cDeleteState, cStreamExpired,
	cSchemaGRPC, cSchemaREST, cSchemaChanged,
	cSSEConnects, cSSEEvents, cResumes, cTokenExpiries, cExpiredRefused,
	cSlowStalls, cVanishRST, cVanishClose, cSnapshots, cFilterEvents,
	cGRPCSubscribes, cGRPCEvents,
}

// violationCounters must stay zero: each is a broken promise of Herald's.
var violationCounters = []string{cOrderViolations, cFilterViolations}

// stats holds the counters, safe for concurrent use, and the first few
// error messages of each kind.
type stats struct {
	mu       sync.Mutex
	counters map[string]*atomic.Int64
	errs     map[string]int // message → count
}

func newStats() *stats {
	s := &stats{counters: make(map[string]*atomic.Int64), errs: make(map[string]int)}
	for _, n := range append(append([]string{cSlowCut, cResumeGaps, cErrors}, activityCounters...), violationCounters...) {
		s.counters[n] = new(atomic.Int64)
	}
	return s
}

func (s *stats) add(name string, n int64) {
	c, ok := s.counters[name]
	if !ok {
		panic("herald-soak: unknown counter " + name)
	}
	c.Add(n)
}

func (s *stats) inc(name string) { s.add(name, 1) }

func (s *stats) get(name string) int64 { return s.counters[name].Load() }

// fail counts an unexpected error of kind (e.g. "sse churn"); the message is
// kept, once per distinct text, for the errors log.
func (s *stats) fail(kind string, err error) {
	s.inc(cErrors)
	msg := kind + ": " + err.Error()
	s.mu.Lock()
	if len(s.errs) < 200 || s.errs[msg] > 0 {
		s.errs[msg]++
	}
	s.mu.Unlock()
}

// violation counts a broken promise and keeps its description.
func (s *stats) violation(name, msg string) {
	s.inc(name)
	s.mu.Lock()
	s.errs[name+": "+msg]++
	s.mu.Unlock()
}

// snapshot returns every counter's value.
func (s *stats) snapshot() map[string]int64 {
	m := make(map[string]int64, len(s.counters))
	for n, c := range s.counters {
		m[n] = c.Load()
	}
	return m
}

// errorLog is the distinct error messages with their counts, most frequent
// first.
func (s *stats) errorLog() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	type e struct {
		msg string
		n   int
	}
	var es []e
	for m, n := range s.errs {
		es = append(es, e{m, n})
	}
	sort.Slice(es, func(i, j int) bool { return es[i].n > es[j].n || es[i].n == es[j].n && es[i].msg < es[j].msg })
	var b strings.Builder
	for _, x := range es {
		fmt.Fprintf(&b, "%6d  %s\n", x.n, x.msg)
	}
	return b.String()
}

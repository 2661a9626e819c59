// Package faults holds Herald's fault-injection suite and the checker that
// judges its histories.
//
// The suite (files built with the "faults" tag, run by `make faults`) builds
// a real cluster in Linux network namespaces: three `herald serve`
// processes, a three-node NATS JetStream cluster with replicas 3, a
// redis-server, and publishers and subscribers in a namespace of their own.
// While publishers publish steadily over gRPC and REST and subscribers on
// every node read their streams, it injects one fault at a time (a node
// partitioned from the broker, the stream leader partitioned away, a bad
// last mile, Redis losing its data, a full disk, a frozen process, a broker
// connection reset again and again) and records every publish attempt and
// every delivery in a History.
//
// Check then judges the history, in the manner of Jepsen's checkers: every
// acknowledged event reaches every subscriber once and in per-topic order,
// across resumes; nothing is delivered that was not published; any loss of
// history is signalled with herald.gap; refusals are fast and carry the
// documented code. The checker is plain code over plain data, tested on
// synthetic histories in the ordinary test run; RELIABILITY.md at the
// repository's root reports what the suite measured.
package faults

import (
	"maps"
	"sync"
	"time"
)

// Outcome is how one publish attempt ended.
type Outcome int

const (
	// Acked means Herald answered with the event's id.
	Acked Outcome = iota
	// Refused means Herald answered with an error: a gRPC status or an
	// HTTP error status.
	Refused
	// NoAnswer means the call ended without an answer from Herald: the
	// publisher's own deadline, or a broken or refused connection. The
	// event may or may not have been accepted.
	NoAnswer
)

// String names the outcome.
func (o Outcome) String() string {
	switch o {
	case Acked:
		return "acked"
	case Refused:
		return "refused"
	default:
		return "no answer"
	}
}

// Attempt is one publish call: one try at publishing the event numbered N
// on Topic. A publisher retries an event, with the same idempotency key,
// until one attempt is acknowledged.
type Attempt struct {
	Topic     string
	N         int           // the event's number on its topic: 1, 2, 3 … in publish order
	API       string        // "grpc" or "rest"
	Node      int           // the node called
	Start     time.Time     // when the call was made
	Latency   time.Duration // until it ended
	Outcome   Outcome
	ID        string // Acked: the event id Herald returned
	Duplicate bool   // Acked: Herald reported the retry as a duplicate of an accepted try
	Code      string // Refused: the gRPC code's name, or the HTTP status as a number ("503")
}

// Delivery is one event a subscriber read from its stream.
type Delivery struct {
	Sub   string    // the subscriber's name
	Conn  int       // which of its connections (0 first, then one more per resume)
	At    time.Time // when it was read
	Type  string    // the SSE event type; GapType for a herald.gap
	ID    string    // the SSE id
	Topic string    // the event's topic (not for gaps)
	N     int       // the event's number on its topic (not for gaps)
}

// GapType is the SSE event type by which Herald signals lost history.
const GapType = "herald.gap"

// Subscriber describes one subscriber of a history: which topics it reads
// and since when it was subscribed (every event whose first publish attempt
// started later is expected to reach it).
type Subscriber struct {
	Name   string
	Node   int
	Topics []string
	Since  time.Time
}

// History is the record of one run: every publish attempt and every
// delivery, and when the fault began and ended. It is safe for concurrent
// use by publishers and subscribers.
type History struct {
	mu          sync.Mutex
	subscribers []Subscriber
	attempts    []Attempt
	deliveries  []Delivery
	connections map[string]int
	faultAt     time.Time
	healAt      time.Time
	faultNode   int
}

// Connected records that a subscriber opened a stream: its first, or a
// resume.
func (h *History) Connected(sub string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.connections == nil {
		h.connections = make(map[string]int)
	}
	h.connections[sub]++
}

// AddSubscriber records a subscriber that is reading from s.Since on.
func (h *History) AddSubscriber(s Subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subscribers = append(h.subscribers, s)
}

// Attempt records one publish attempt.
func (h *History) Attempt(a Attempt) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attempts = append(h.attempts, a)
}

// Deliver records one event a subscriber read.
func (h *History) Deliver(d Delivery) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.deliveries = append(h.deliveries, d)
}

// Fault records that the fault began now, against node (-1 when it is not
// one node's: then the time figures are taken over every node).
func (h *History) Fault(node int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faultAt, h.faultNode = time.Now(), node
}

// Heal records that the fault ended now.
func (h *History) Heal() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.healAt = time.Now()
}

// Snapshot returns a copy of what was recorded so far, for Check.
func (h *History) Snapshot() Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Record{
		Subscribers: append([]Subscriber(nil), h.subscribers...),
		Attempts:    append([]Attempt(nil), h.attempts...),
		Deliveries:  append([]Delivery(nil), h.deliveries...),
		Connections: maps.Clone(h.connections),
		FaultAt:     h.faultAt,
		HealAt:      h.healAt,
		FaultNode:   h.faultNode,
	}
}

// Record is a history as plain data: what Check judges.
type Record struct {
	Subscribers []Subscriber
	Attempts    []Attempt
	Deliveries  []Delivery
	Connections map[string]int // streams each subscriber opened that Herald answered with 200
	FaultAt     time.Time      // zero when no fault was injected
	HealAt      time.Time      // zero when the fault was not healed
	FaultNode   int            // the node the fault was against, or -1
}

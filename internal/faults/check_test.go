package faults

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var rules = Rules{RefusalCodes: []string{"Unavailable", "503"}, MaxRefusal: 2 * time.Second}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// clean returns a valid history: two topics of five events each, published
// while node 0 was partitioned (its calls refused fast), read in full by two
// subscribers, one of which resumed once.
func clean() Record {
	rec := Record{FaultNode: 0, FaultAt: t0.Add(450 * time.Millisecond), HealAt: t0.Add(650 * time.Millisecond)}
	for _, s := range []string{"a", "b"} {
		rec.Subscribers = append(rec.Subscribers, Subscriber{Name: s, Topics: []string{"t1", "t2"}, Since: t0})
	}
	at := t0
	for n := 1; n <= 5; n++ {
		for _, topic := range []string{"t1", "t2"} {
			at = at.Add(100 * time.Millisecond)
			id := fmt.Sprintf("e-%s-%d", topic, n)
			if n == 3 { // during the fault: node 0 refuses, node 1 accepts
				rec.Attempts = append(rec.Attempts, Attempt{Topic: topic, N: n, API: "grpc", Node: 0, Start: at, Latency: 5 * time.Millisecond, Outcome: Refused, Code: "Unavailable"})
				rec.Attempts = append(rec.Attempts, Attempt{Topic: topic, N: n, API: "rest", Node: 0, Start: at, Latency: 5 * time.Millisecond, Outcome: Refused, Code: "503"})
			}
			node := 0
			if n == 3 {
				node = 1
			}
			rec.Attempts = append(rec.Attempts, Attempt{Topic: topic, N: n, API: "grpc", Node: node, Start: at, Latency: 10 * time.Millisecond, Outcome: Acked, ID: id})
		}
	}
	for _, s := range []string{"a", "b"} {
		conn := 0
		at := t0.Add(time.Second)
		for n := 1; n <= 5; n++ {
			if s == "b" && n == 4 {
				conn++ // resumed with Last-Event-ID
			}
			for _, topic := range []string{"t1", "t2"} {
				at = at.Add(200 * time.Millisecond)
				rec.Deliveries = append(rec.Deliveries, Delivery{Sub: s, Conn: conn, At: at, Type: "chat.v1.ChatMessage", ID: fmt.Sprintf("e-%s-%d", topic, n), Topic: topic, N: n})
			}
		}
	}
	return rec
}

func TestCheckCleanHistory(t *testing.T) {
	r := Check(clean(), rules)
	if !r.OK() || len(r.Violations) > 0 {
		t.Fatalf("a valid history was judged invalid: %+v", r)
	}
	want := Report{Published: 10, Acknowledged: 10, Attempts: 14, Refused: 4, Expected: 20, Delivered: 20}
	if r.Published != want.Published || r.Acknowledged != want.Acknowledged || r.Attempts != want.Attempts ||
		r.Refused != want.Refused || r.Expected != want.Expected || r.Delivered != want.Delivered {
		t.Errorf("counts %+v; want %+v", r, want)
	}
	// Acknowledgements come every 100 ms (t0 + 110 ms, 210 ms …).
	if r.LongestWithoutAck != 100*time.Millisecond {
		t.Errorf("LongestWithoutAck %v; want 100ms", r.LongestWithoutAck)
	}
	// The fault began at t0 + 450 ms; node 0's first refusal (of t1#3,
	// called at t0 + 500 ms) came 5 ms later.
	if r.FailFast != 55*time.Millisecond {
		t.Errorf("FailFast %v; want 55ms", r.FailFast)
	}
	// Healed at t0 + 650 ms; node 0 acknowledged t1#4, called at
	// t0 + 700 ms, 10 ms later.
	if r.Recovery != 60*time.Millisecond {
		t.Errorf("Recovery %v; want 60ms", r.Recovery)
	}
	// Acknowledged before the heal: #1 to #3 of both topics; the last of
	// them, t2#3, was read at t0 + 1 s + 6 × 200 ms = t0 + 2.2 s.
	if r.CatchUp != 1550*time.Millisecond {
		t.Errorf("CatchUp %v; want 1.55s", r.CatchUp)
	}
}

// Each mutation is what a bug would do to the history; the checker must
// count it and say so.
func TestCheckDetectsViolations(t *testing.T) {
	drop := func(rec *Record, sub, topic string, n int) {
		rec.Deliveries = slices.DeleteFunc(rec.Deliveries, func(d Delivery) bool { return d.Sub == sub && d.Topic == topic && d.N == n })
	}
	index := func(rec *Record, sub, topic string, n int) int {
		return slices.IndexFunc(rec.Deliveries, func(d Delivery) bool { return d.Sub == sub && d.Topic == topic && d.N == n })
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Record)
		count  func(Report) int
		says   string
		want   int // the count
	}{
		{"an acknowledged event never delivered", func(rec *Record) { drop(rec, "a", "t1", 2) },
			func(r Report) int { return r.Lost }, "a never read t1#2", 1},
		{"an acknowledged event missing after a resume, silently", func(rec *Record) { drop(rec, "b", "t2", 4) },
			func(r Report) int { return r.Lost }, "b never read t2#4", 1},
		{"an event delivered twice", func(rec *Record) {
			rec.Deliveries = append(rec.Deliveries, rec.Deliveries[index(rec, "a", "t1", 3)])
		}, func(r Report) int { return r.Duplicated }, "a read t1#3 again", 1},
		{"an event replayed twice across a resume", func(rec *Record) {
			d := rec.Deliveries[index(rec, "b", "t1", 3)]
			d.Conn = 1
			rec.Deliveries = slices.Insert(rec.Deliveries, index(rec, "b", "t1", 4), d)
		}, func(r Report) int { return r.Duplicated }, "b read t1#3 again (connection 1)", 1},
		{"two events of a topic swapped", func(rec *Record) {
			i, j := index(rec, "a", "t2", 2), index(rec, "a", "t2", 3)
			rec.Deliveries[i], rec.Deliveries[j] = rec.Deliveries[j], rec.Deliveries[i]
		}, func(r Report) int { return r.OutOfOrder }, "a read t2#2 after t2#3", 1},
		{"an event never published", func(rec *Record) {
			rec.Deliveries = append(rec.Deliveries, Delivery{Sub: "a", Type: "chat.v1.ChatMessage", ID: "e-t1-9", Topic: "t1", N: 9})
		}, func(r Report) int { return r.Phantom }, "a read t1#9 (id e-t1-9), which was never published", 1},
		{"an event under another id than acknowledged", func(rec *Record) {
			rec.Deliveries[index(rec, "b", "t1", 1)].ID = "e-t1-77"
		}, func(r Report) int { return r.Phantom }, "acknowledged with id e-t1-1", 1},
		{"a refusal with an undocumented code", func(rec *Record) {
			rec.Attempts[slices.IndexFunc(rec.Attempts, func(a Attempt) bool { return a.Outcome == Refused })].Code = "Internal"
		}, func(r Report) int { return r.BadRefusals }, "with Internal; documented: Unavailable, 503", 1},
		{"a slow refusal", func(rec *Record) {
			rec.Attempts[slices.IndexFunc(rec.Attempts, func(a Attempt) bool { return a.Outcome == Refused })].Latency = 5 * time.Second
		}, func(r Report) int { return r.SlowRefusals }, "after 5s; a refusal must come within 2s", 1},
		{"an event acknowledged twice under two ids", func(rec *Record) {
			rec.Attempts = append(rec.Attempts, Attempt{Topic: "t1", N: 1, Node: 2, Start: t0, Outcome: Acked, ID: "e-other"})
		}, func(r Report) int { return r.Phantom }, "acknowledged twice with different ids", 3}, // and each subscriber read it under the other id
		{"two events acknowledged with one id", func(rec *Record) {
			i := slices.IndexFunc(rec.Attempts, func(a Attempt) bool { return a.Topic == "t2" && a.N == 2 && a.Outcome == Acked })
			rec.Attempts[i].ID = "e-t1-2"
		}, func(r Report) int { return r.Phantom }, "t1#2 and t2#2 were acknowledged with the same id e-t1-2", 3}, // and each subscriber read t2#2 under its real id
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := clean()
			tc.mutate(&rec)
			r := Check(rec, rules)
			if r.OK() {
				t.Fatalf("the checker passed a history with %s: %+v", tc.name, r)
			}
			if got := tc.count(r); got != tc.want {
				t.Errorf("counted %d; want %d (%+v)", got, tc.want, r)
			}
			if !slices.ContainsFunc(r.Violations, func(v string) bool { return strings.Contains(v, tc.says) }) {
				t.Errorf("violations %q; want one saying %q", r.Violations, tc.says)
			}
		})
	}
}

// A loss that a herald.gap signals is not a violation: it is what Herald
// promises when history is gone (Redis restarted empty, retention passed).
// The gap must sit where the lost events would have been.
func TestCheckGaps(t *testing.T) {
	gap := func(rec *Record, sub string, at int) {
		rec.Deliveries = slices.Insert(rec.Deliveries, at, Delivery{Sub: sub, Conn: 1, Type: GapType})
	}
	index := func(rec *Record, sub, topic string, n int) int {
		return slices.IndexFunc(rec.Deliveries, func(d Delivery) bool { return d.Sub == sub && d.Topic == topic && d.N == n })
	}
	lose := func(rec *Record) {
		rec.Deliveries = slices.DeleteFunc(rec.Deliveries, func(d Delivery) bool { return d.Sub == "b" && d.N == 3 })
	}

	rec := clean()
	lose(&rec)
	gap(&rec, "b", index(&rec, "b", "t1", 4))
	if r := Check(rec, rules); !r.OK() || r.LostSignalled != 2 || r.Gaps != 1 {
		t.Errorf("a signalled loss: %+v; want OK with 2 lost and signalled, 1 gap", r)
	}

	rec = clean()
	lose(&rec)
	gap(&rec, "b", index(&rec, "b", "t1", 2)) // before t1#2 and t2#2 were read again: not where #3 belonged
	if r := Check(rec, rules); r.OK() || r.Lost != 2 {
		t.Errorf("a gap elsewhere in the stream: %+v; want 2 lost", r)
	}

	rec = clean()
	lose(&rec)
	gap(&rec, "a", index(&rec, "a", "t1", 4)) // another subscriber's gap
	if r := Check(rec, rules); r.OK() || r.Lost != 2 {
		t.Errorf("another subscriber's gap: %+v; want 2 lost", r)
	}
}

// An event whose every attempt went unanswered may still have been
// accepted: reading it is allowed, and not reading it is too.
func TestCheckUnacknowledged(t *testing.T) {
	rec := clean()
	rec.Attempts = append(rec.Attempts, Attempt{Topic: "t1", N: 6, Node: 0, Start: t0.Add(3 * time.Second), Latency: 3 * time.Second, Outcome: NoAnswer})
	rec.Attempts = append(rec.Attempts, Attempt{Topic: "t2", N: 6, Node: 0, Start: t0.Add(3 * time.Second), Latency: 3 * time.Second, Outcome: NoAnswer})
	rec.Deliveries = append(rec.Deliveries, Delivery{Sub: "a", Type: "chat.v1.ChatMessage", ID: "e-t1-6", Topic: "t1", N: 6})
	r := Check(rec, rules)
	if !r.OK() || r.Unacked != 1 || r.NoAnswer != 2 || r.Published != 12 || r.Acknowledged != 10 {
		t.Errorf("%+v; want OK, 1 unacknowledged event read, 2 unanswered calls, 12 published, 10 acknowledged", r)
	}
}

// Events published before a subscriber subscribed are not expected of it.
func TestCheckSubscribedLate(t *testing.T) {
	rec := clean()
	rec.Subscribers[0].Since = t0.Add(450 * time.Millisecond) // after #2's attempts: expects #3 on
	rec.Deliveries = slices.DeleteFunc(rec.Deliveries, func(d Delivery) bool { return d.Sub == "a" && d.N < 3 })
	if r := Check(rec, rules); !r.OK() || r.Expected != 10+6 {
		t.Errorf("%+v; want OK with 16 expected", r)
	}
}

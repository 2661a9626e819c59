package faults

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Rules are what Check holds refusals to.
type Rules struct {
	// RefusalCodes are the documented codes of a refusal during an outage:
	// gRPC code names ("Unavailable") and HTTP statuses ("503").
	RefusalCodes []string
	// MaxRefusal is the slowest a refusal may be: the broker timeout and a
	// margin for a loaded machine.
	MaxRefusal time.Duration
}

// Report is what Check found in a history. The counts of violations (Lost,
// Duplicated, OutOfOrder, Phantom, BadRefusals, SlowRefusals) must be zero;
// Violations describes the first few of them.
type Report struct {
	Published    int // distinct events publishers tried to publish
	Acknowledged int // of those, the ones an attempt was acknowledged for
	Attempts     int // publish calls, retries included
	Refused      int // calls Herald answered with an error
	NoAnswer     int // calls that ended without an answer (deadline, broken connection)

	Expected      int // (subscriber, acknowledged event) pairs: each must be delivered
	Delivered     int // events read by subscribers, gaps not counted
	Lost          int // expected pairs neither delivered nor signalled by a herald.gap
	LostSignalled int // expected pairs not delivered, with a herald.gap where they would have been
	Duplicated    int // events a subscriber read more than once
	OutOfOrder    int // events a subscriber read after a later event of the same topic
	Phantom       int // events read that were never published, or under an id other than the acknowledged one; events acknowledged with another's id
	Unacked       int // events read whose publish was never acknowledged (allowed: the answer was lost)
	Gaps          int // herald.gap events read
	Resumes       int // streams subscribers opened again, with Last-Event-ID

	BadRefusals    int           // refusals with a code not in Rules.RefusalCodes
	SlowRefusals   int           // refusals slower than Rules.MaxRefusal
	SlowestRefusal time.Duration // the slowest refusal

	// FailFast is the time from the fault's start until the first refusal
	// from the node it is against arrived; -1 when there was none.
	FailFast time.Duration
	// Recovery is the time from the heal until the first acknowledged
	// publish through the node the fault was against; -1 when there was
	// none, or no heal.
	Recovery time.Duration
	// CatchUp is the time from the heal until every subscriber had read
	// every event acknowledged before it (0 when they had by then); -1
	// when some never did, or no heal.
	CatchUp time.Duration
	// LastToCatchUp names the subscriber that caught up last.
	LastToCatchUp string
	// LostBy counts the lost (unsignalled) events of each subscriber that
	// lost any.
	LostBy map[string]int
	// LongestWithoutAck is the longest time in which no publish call was
	// acknowledged, on any node: how long publishing was down.
	LongestWithoutAck time.Duration

	Violations []string
}

// OK reports whether the history broke none of the rules.
func (r *Report) OK() bool {
	return r.Lost == 0 && r.Duplicated == 0 && r.OutOfOrder == 0 && r.Phantom == 0 &&
		r.BadRefusals == 0 && r.SlowRefusals == 0
}

// maxViolations bounds how many violations a report describes.
const maxViolations = 20

func (r *Report) violate(format string, args ...any) {
	if len(r.Violations) < maxViolations {
		r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
	}
}

type eventKey struct {
	topic string
	n     int
}

func (k eventKey) String() string { return fmt.Sprintf("%s#%d", k.topic, k.n) }

type published struct {
	first time.Time // start of the first attempt
	acked bool
	id    string
	ackAt time.Time // when the acknowledgement arrived
}

// Check judges a history by the rules above and by these: every event
// acknowledged after a subscriber subscribed reaches it exactly once (a
// subscriber that resumed with Last-Event-ID counts as one across its
// connections), in the order of its topic; an event it does not get must be
// covered by a herald.gap read between the events of that topic before and
// after it; nothing is read that was not published, and a read event
// carries the id its publish was acknowledged with.
func Check(rec Record, rules Rules) Report {
	var r Report
	r.FailFast, r.Recovery, r.CatchUp = -1, -1, -1

	pubs := make(map[eventKey]*published)
	for _, a := range rec.Attempts {
		k := eventKey{a.Topic, a.N}
		p := pubs[k]
		if p == nil {
			p = &published{first: a.Start}
			pubs[k] = p
		}
		if a.Start.Before(p.first) {
			p.first = a.Start
		}
		r.Attempts++
		end := a.Start.Add(a.Latency)
		onNode := rec.FaultNode < 0 || a.Node == rec.FaultNode
		switch a.Outcome {
		case Acked:
			if p.acked && p.id != a.ID {
				r.Phantom++
				r.violate("%v acknowledged twice with different ids: %s and %s", k, p.id, a.ID)
			}
			if !p.acked || end.Before(p.ackAt) {
				p.ackAt = end
			}
			p.acked, p.id = true, a.ID
			if onNode && !rec.HealAt.IsZero() && !a.Start.Before(rec.HealAt) {
				if d := end.Sub(rec.HealAt); r.Recovery < 0 || d < r.Recovery {
					r.Recovery = d
				}
			}
		case Refused:
			r.Refused++
			if !slices.Contains(rules.RefusalCodes, a.Code) {
				r.BadRefusals++
				r.violate("%v refused by node %d over %s with %s; documented: %s", k, a.Node, a.API, a.Code, strings.Join(rules.RefusalCodes, ", "))
			}
			if a.Latency > r.SlowestRefusal {
				r.SlowestRefusal = a.Latency
			}
			if rules.MaxRefusal > 0 && a.Latency > rules.MaxRefusal {
				r.SlowRefusals++
				r.violate("%v refused by node %d over %s after %v; a refusal must come within %v", k, a.Node, a.API, a.Latency.Round(time.Millisecond), rules.MaxRefusal)
			}
			if onNode && !rec.FaultAt.IsZero() && !a.Start.Before(rec.FaultAt) && (rec.HealAt.IsZero() || a.Start.Before(rec.HealAt)) {
				if d := end.Sub(rec.FaultAt); r.FailFast < 0 || d < r.FailFast {
					r.FailFast = d
				}
			}
		case NoAnswer:
			r.NoAnswer++
		}
	}
	var acks []time.Time
	for _, a := range rec.Attempts {
		if a.Outcome == Acked {
			acks = append(acks, a.Start.Add(a.Latency))
		}
	}
	slices.SortFunc(acks, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(acks); i++ {
		r.LongestWithoutAck = max(r.LongestWithoutAck, acks[i].Sub(acks[i-1]))
	}
	r.Published = len(pubs)
	keys := make([]eventKey, 0, len(pubs))
	for k := range pubs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].topic != keys[j].topic {
			return keys[i].topic < keys[j].topic
		}
		return keys[i].n < keys[j].n
	})
	byID := make(map[string]eventKey)
	for _, k := range keys {
		p := pubs[k]
		if !p.acked {
			continue
		}
		r.Acknowledged++
		if other, ok := byID[p.id]; ok {
			r.Phantom++
			r.violate("%v and %v were acknowledged with the same id %s", other, k, p.id)
			continue
		}
		byID[p.id] = k
	}

	for _, n := range rec.Connections {
		r.Resumes += max(0, n-1)
	}
	bySub := make(map[string][]Delivery)
	for _, d := range rec.Deliveries {
		bySub[d.Sub] = append(bySub[d.Sub], d)
	}
	caughtUp := true
	var lastCatchUp time.Time
	for _, s := range rec.Subscribers {
		ds := bySub[s.Name]
		// Per topic: the position in ds and number of each event read, in
		// the order read; and the positions of the gaps.
		type read struct {
			pos int
			n   int
			at  time.Time
		}
		reads := make(map[string][]read)
		var gaps []int
		for i, d := range ds {
			if d.Type == GapType {
				r.Gaps++
				gaps = append(gaps, i)
				continue
			}
			r.Delivered++
			k := eventKey{d.Topic, d.N}
			p := pubs[k]
			switch {
			case p == nil:
				r.Phantom++
				r.violate("%s read %v (id %s), which was never published", s.Name, k, d.ID)
			case p.acked && d.ID != p.id:
				r.Phantom++
				r.violate("%s read %v with id %s; its publish was acknowledged with id %s", s.Name, k, d.ID, p.id)
			case !p.acked:
				r.Unacked++
			}
			reads[d.Topic] = append(reads[d.Topic], read{pos: i, n: d.N, at: d.At})
		}
		for topic, rs := range reads {
			seen := make(map[int]bool)
			maxN := 0
			for _, x := range rs {
				if seen[x.n] {
					r.Duplicated++
					r.violate("%s read %s#%d again (connection %d)", s.Name, topic, x.n, ds[x.pos].Conn)
					continue
				}
				seen[x.n] = true
				if x.n < maxN {
					r.OutOfOrder++
					r.violate("%s read %s#%d after %s#%d", s.Name, topic, x.n, topic, maxN)
				}
				maxN = max(maxN, x.n)
			}
		}
		// Every acknowledged event of its topics published since it
		// subscribed, in a stable order for the report.
		var want []eventKey
		for k, p := range pubs {
			if p.acked && slices.Contains(s.Topics, k.topic) && !p.first.Before(s.Since) {
				want = append(want, k)
			}
		}
		sort.Slice(want, func(i, j int) bool {
			if want[i].topic != want[j].topic {
				return want[i].topic < want[j].topic
			}
			return want[i].n < want[j].n
		})
		for _, k := range want {
			r.Expected++
			rs := reads[k.topic]
			at := -1
			for _, x := range rs {
				if x.n == k.n {
					at = x.pos
					if !rec.HealAt.IsZero() && pubs[k].ackAt.Before(rec.HealAt) && x.at.After(lastCatchUp) {
						lastCatchUp, r.LastToCatchUp = x.at, s.Name
					}
					break
				}
			}
			if at >= 0 {
				continue
			}
			if !rec.HealAt.IsZero() && pubs[k].ackAt.Before(rec.HealAt) {
				caughtUp = false
			}
			// Not read: the reads of this topic just before and after it,
			// by number, bound where it belonged in the stream; a gap
			// between them signals its loss.
			before, after := -1, len(ds)
			for _, x := range rs {
				if x.n < k.n && x.pos > before {
					before = x.pos
				}
				if x.n > k.n && x.pos < after {
					after = x.pos
				}
			}
			signalled := slices.ContainsFunc(gaps, func(g int) bool { return g > before && g < after })
			if signalled {
				r.LostSignalled++
			} else {
				r.Lost++
				if r.LostBy == nil {
					r.LostBy = make(map[string]int)
				}
				r.LostBy[s.Name]++
				r.violate("%s never read %v (acknowledged as %s), and no herald.gap signalled its loss", s.Name, k, pubs[k].id)
			}
		}
	}
	if !rec.HealAt.IsZero() && caughtUp {
		r.CatchUp = max(0, lastCatchUp.Sub(rec.HealAt))
	}
	return r
}

// Table renders the report as a Markdown table of its figures, as
// RELIABILITY.md shows them.
func (r *Report) Table() string {
	dur := func(d time.Duration) string {
		if d < 0 {
			return "—"
		}
		return d.Round(10 * time.Millisecond).String()
	}
	rows := [][2]string{
		{"events published", fmt.Sprint(r.Published)},
		{"acknowledged", fmt.Sprint(r.Acknowledged)},
		{"publish calls (refused, unanswered)", fmt.Sprintf("%d (%d, %d)", r.Attempts, r.Refused, r.NoAnswer)},
		{"deliveries expected / made", fmt.Sprintf("%d / %d", r.Expected, r.Delivered)},
		{"lost (acknowledged, unsignalled)", fmt.Sprint(r.Lost)},
		{"lost, signalled by herald.gap", fmt.Sprint(r.LostSignalled)},
		{"duplicated", fmt.Sprint(r.Duplicated)},
		{"out of order", fmt.Sprint(r.OutOfOrder)},
		{"never published / wrong id", fmt.Sprint(r.Phantom)},
		{"read though unacknowledged", fmt.Sprint(r.Unacked)},
		{"herald.gap events", fmt.Sprint(r.Gaps)},
		{"subscriber resumes (Last-Event-ID)", fmt.Sprint(r.Resumes)},
		{"refusals off the documented codes / too slow", fmt.Sprintf("%d / %d", r.BadRefusals, r.SlowRefusals)},
		{"slowest refusal", dur(r.SlowestRefusal)},
		{"longest time without an acknowledged publish", dur(r.LongestWithoutAck)},
		{"fault → first fast refusal", dur(r.FailFast)},
		{"heal → first publish acknowledged", dur(r.Recovery)},
		{"heal → every subscriber caught up", dur(r.CatchUp) + lastTo(r)},
	}
	var b strings.Builder
	b.WriteString("| figure | value |\n|---|---|\n")
	for _, row := range rows {
		fmt.Fprintf(&b, "| %s | %s |\n", row[0], row[1])
	}
	return b.String()
}

func lastTo(r *Report) string {
	if r.CatchUp <= 0 || r.LastToCatchUp == "" {
		return ""
	}
	return " (last: " + r.LastToCatchUp + ")"
}

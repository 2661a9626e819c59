package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker"
)

// Presence: what this node serves, told to the other nodes through the
// broker (broker.PresenceStore), and the revocations it enforces
// (broker.Revoker), read back on the same schedule.
//
// The figures cost the delivery path nothing: subscribers are counted per
// topic or pattern by the hub as they come and go (Hub.counts), and
// publishes by the publishing goroutine in a per-topic counter of atomics
// (pubCounter), which the reporter samples. Every PresenceInterval the
// reporter reads the revocations, ends the streams they name, and saves
// this node's report, which expires after presenceTTL.

// DefaultPresenceInterval is how often a node reports its figures and
// reads the revocations.
const DefaultPresenceInterval = 2 * time.Second

// presenceTTL is how long a node's report outlives it: three missed
// reports, and at least the broker's minimum.
func presenceTTL(every time.Duration) time.Duration { return max(3*every, time.Second) }

// rateWindow is what a publish rate is taken over, in rateSlots samples.
const (
	rateWindow = time.Minute
	rateSlots  = 12
)

// maxReportTopics bounds the topics of one node's report (the busiest
// first), so that a node with a million topics saves a bounded report.
const maxReportTopics = 10_000

// nodeReport is what a node saves with broker.PresenceStore, as JSON.
type nodeReport struct {
	Version     string               `json:"version"`
	Started     time.Time            `json:"started"`
	Reported    time.Time            `json:"reported"`
	Connections int                  `json:"connections"`
	Healthy     bool                 `json:"brokerHealthy"`
	BrokerError string               `json:"brokerError,omitempty"`
	Subscribers map[string]int32     `json:"subscribers,omitempty"`
	Published   map[string]pubReport `json:"published,omitempty"`
}

// pubReport is a topic's publishes through one node.
type pubReport struct {
	LastMinute int32  `json:"m"`
	LastSeq    uint64 `json:"seq,omitempty"`
	LastTime   int64  `json:"t,omitempty"` // Unix milliseconds
}

// pubCounter counts the publishes of one topic through this node. n, seq
// and at are written by publishers (atomics); the samples only by the
// reporter.
type pubCounter struct {
	n   atomic.Uint64
	seq atomic.Uint64
	at  atomic.Int64 // Unix milliseconds of the event with seq

	samples [rateSlots]uint64 // n at the last rateSlots sample times, oldest at next
	next    int
}

// presence is this node's side of presence and revocations.
type presence struct {
	name    string
	version string
	started time.Time
	every   time.Duration
	hub     *Hub
	broker  broker.Broker
	log     *slog.Logger

	pubs sync.Map // topic → *pubCounter

	// sampleMu orders the reporter's sampling of pubs with the admin
	// API's reads of the samples.
	sampleMu   sync.Mutex
	lastSample time.Time

	// buf is the reporter's, for its reports' JSON.
	buf []byte

	// revoked is the revocations in force, subject → until; replaced
	// whole, read without a lock by every authentication.
	revoked atomic.Pointer[map[string]time.Time]
}

func newPresence(name, version string, every time.Duration, hub *Hub, b broker.Broker, log *slog.Logger) *presence {
	p := &presence{name: name, version: version, started: time.Now(), every: every, hub: hub, broker: b, log: log}
	p.revoked.Store(new(map[string]time.Time))
	return p
}

// published counts an accepted event of topic; the publish path calls it.
func (p *presence) published(topic string, seq uint64, at time.Time) {
	c, ok := p.pubs.Load(topic)
	if !ok {
		c, _ = p.pubs.LoadOrStore(topic, new(pubCounter))
	}
	pc := c.(*pubCounter)
	pc.n.Add(1)
	// The highest seq wins; its time goes with it (approximately, under
	// races of publishers of one topic, which is all a console needs).
	for {
		old := pc.seq.Load()
		if seq <= old {
			break
		}
		if pc.seq.CompareAndSwap(old, seq) {
			pc.at.Store(at.UnixMilli())
			break
		}
	}
}

// sample takes a sample of every counter once per rateWindow/rateSlots,
// forgetting the topics idle for a whole window.
func (p *presence) sample(now time.Time) {
	p.sampleMu.Lock()
	defer p.sampleMu.Unlock()
	if now.Sub(p.lastSample) < rateWindow/rateSlots {
		return
	}
	p.lastSample = now
	p.pubs.Range(func(k, v any) bool {
		c := v.(*pubCounter)
		n := c.n.Load()
		if n == c.samples[c.next] && n == c.samples[(c.next+rateSlots-1)%rateSlots] && now.UnixMilli()-c.at.Load() > rateWindow.Milliseconds() {
			p.pubs.Delete(k) // a publish racing with this may go uncounted
			return true
		}
		c.samples[c.next] = n
		c.next = (c.next + 1) % rateSlots
		return true
	})
}

// publishedReport returns, per topic, the publishes of the last minute
// through this node and the last event's position.
func (p *presence) publishedReport() map[string]pubReport {
	p.sampleMu.Lock()
	defer p.sampleMu.Unlock()
	out := make(map[string]pubReport)
	p.pubs.Range(func(k, v any) bool {
		c := v.(*pubCounter)
		out[k.(string)] = pubReport{
			LastMinute: int32(min(c.n.Load()-c.samples[c.next], 1<<31-1)),
			LastSeq:    c.seq.Load(),
			LastTime:   c.at.Load(),
		}
		return true
	})
	return out
}

// report takes this node's figures now.
func (p *presence) report(ctx context.Context) nodeReport {
	subs, conns := p.hub.presence()
	r := nodeReport{
		Version:     p.version,
		Started:     p.started,
		Reported:    time.Now(),
		Connections: conns,
		Healthy:     true,
		Subscribers: subs,
		Published:   p.publishedReport(),
	}
	if hc, ok := p.broker.(broker.HealthChecker); ok {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := hc.Healthy(ctx); err != nil {
			r.Healthy, r.BrokerError = false, err.Error()
		}
	}
	trimReport(&r)
	return r
}

// appendJSON appends r as encoding/json would encode it, but without
// sorting the topics or reflecting on each: with thousands of topics that
// was nearly all of a node's reporting, which it does every
// PresenceInterval. Other nodes read it with encoding/json.
func (r *nodeReport) appendJSON(b []byte) []byte {
	b = append(b, `{"version":`...)
	b = appendReportString(b, r.Version)
	b = append(b, `,"started":"`...)
	b = r.Started.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","reported":"`...)
	b = r.Reported.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","connections":`...)
	b = strconv.AppendInt(b, int64(r.Connections), 10)
	b = append(b, `,"brokerHealthy":`...)
	b = strconv.AppendBool(b, r.Healthy)
	if r.BrokerError != "" {
		b = append(b, `,"brokerError":`...)
		b = appendReportString(b, r.BrokerError)
	}
	if len(r.Subscribers) > 0 {
		b = appendReportMap(append(b, `,"subscribers":`...), r.Subscribers, func(b []byte, n int32) []byte {
			return strconv.AppendInt(b, int64(n), 10)
		})
	}
	if len(r.Published) > 0 {
		b = appendReportMap(append(b, `,"published":`...), r.Published, func(b []byte, pub pubReport) []byte {
			b = strconv.AppendInt(append(b, `{"m":`...), int64(pub.LastMinute), 10)
			if pub.LastSeq != 0 {
				b = strconv.AppendUint(append(b, `,"seq":`...), pub.LastSeq, 10)
			}
			if pub.LastTime != 0 {
				b = strconv.AppendInt(append(b, `,"t":`...), pub.LastTime, 10)
			}
			return append(b, '}')
		})
	}
	return append(b, '}')
}

// appendReportMap appends m as a JSON object, in the map's order, each
// value by appendValue.
func appendReportMap[V any](b []byte, m map[string]V, appendValue func([]byte, V) []byte) []byte {
	b = append(b, '{')
	for topic, v := range m {
		if b[len(b)-1] != '{' {
			b = append(b, ',')
		}
		b = appendValue(append(appendReportString(b, topic), ':'), v)
	}
	return append(b, '}')
}

// appendReportString appends s as a JSON string, its invalid UTF-8 (an
// error's text may hold any bytes) replaced byte by byte, as encoding/json
// replaces it.
func appendReportString(b []byte, s string) []byte {
	if out, ok := appendJSONString(b, s); ok {
		return out
	}
	var valid strings.Builder
	for _, r := range s {
		valid.WriteRune(r) // each invalid byte is a utf8.RuneError
	}
	out, _ := appendJSONString(b, valid.String())
	return out
}

// trimReport keeps the busiest maxReportTopics topics of each list.
func trimReport(r *nodeReport) {
	if len(r.Subscribers) > maxReportTopics {
		keys := slices.SortedFunc(maps.Keys(r.Subscribers), func(a, b string) int { return int(r.Subscribers[b] - r.Subscribers[a]) })
		for _, k := range keys[maxReportTopics:] {
			delete(r.Subscribers, k)
		}
	}
	if len(r.Published) > maxReportTopics {
		keys := slices.SortedFunc(maps.Keys(r.Published), func(a, b string) int { return int(r.Published[b].LastMinute - r.Published[a].LastMinute) })
		for _, k := range keys[maxReportTopics:] {
			delete(r.Published, k)
		}
	}
}

// run reports and reads revocations every interval until ctx ends.
func (p *presence) run(ctx context.Context) {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		p.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tick is one round of run.
func (p *presence) tick(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(p.every, 2*time.Second))
	defer cancel()
	if rv, ok := p.broker.(broker.Revoker); ok {
		if revs, err := rv.Revocations(ctx); err == nil {
			p.setRevoked(revs)
		} else if ctx.Err() == nil {
			p.log.Debug("reading revocations failed", "err", err)
		}
	}
	p.sample(time.Now())
	if ps, ok := p.broker.(broker.PresenceStore); ok {
		r := p.report(ctx)
		p.buf = r.appendJSON(p.buf[:0])
		err := ps.ReportPresence(ctx, p.name, p.buf, presenceTTL(p.every))
		if err != nil && ctx.Err() == nil {
			p.log.Debug("reporting presence failed", "err", err)
		}
	}
}

// setRevoked replaces the revocations in force and ends the streams of
// the subjects they name.
func (p *presence) setRevoked(revs []broker.Revocation) {
	m := make(map[string]time.Time, len(revs))
	for _, r := range revs {
		m[r.Subject] = r.Until
	}
	p.revoked.Store(&m)
	if len(m) > 0 {
		p.hub.revoke(func(s string) bool { _, ok := p.revokedUntil(s); return ok })
	}
}

// addRevoked applies one revocation on this node at once, ahead of the
// next read.
func (p *presence) addRevoked(r broker.Revocation) {
	old := *p.revoked.Load()
	m := make(map[string]time.Time, len(old)+1)
	maps.Copy(m, old)
	if r.Until.After(time.Now()) {
		m[r.Subject] = r.Until
	} else {
		delete(m, r.Subject)
	}
	p.revoked.Store(&m)
	p.hub.revoke(func(s string) bool { return s == r.Subject && r.Until.After(time.Now()) })
}

// revokedUntil reports whether subject is revoked, and until when.
func (p *presence) revokedUntil(subject string) (time.Time, bool) {
	until, ok := (*p.revoked.Load())[subject]
	if !ok || !time.Now().Before(until) {
		return time.Time{}, false
	}
	return until, true
}

// reports returns every node's latest report: this node's taken now, the
// others' as they saved them.
func (p *presence) reports(ctx context.Context) (map[string]nodeReport, error) {
	out := map[string]nodeReport{p.name: p.report(ctx)}
	ps, ok := p.broker.(broker.PresenceStore)
	if !ok {
		return out, nil
	}
	raw, err := ps.Presence(ctx)
	if err != nil {
		return nil, err
	}
	for node, data := range raw {
		if node == p.name {
			continue
		}
		var r nodeReport
		if err := json.Unmarshal(data, &r); err != nil {
			p.log.Debug("a presence report does not parse", "node", node, "err", err)
			continue
		}
		out[node] = r
	}
	return out, nil
}

// revokingAuth refuses the tokens of revoked subjects.
type revokingAuth struct {
	inner auth.Authenticator
	p     *presence
}

func (a revokingAuth) Authenticate(ctx context.Context, c auth.Credentials) (auth.Permissions, error) {
	perms, err := a.inner.Authenticate(ctx, c)
	if err == nil && perms.Subject != "" {
		if until, ok := a.p.revokedUntil(perms.Subject); ok {
			return auth.Permissions{}, fmt.Errorf("%w: the token's subject is revoked until %s", auth.ErrUnauthenticated, until.UTC().Format(time.RFC3339))
		}
	}
	return perms, err
}

// defaultNodeName is the host name, made to fit a node name, and a random
// suffix, so that two nodes on one host differ.
func defaultNodeName() string {
	host, _ := os.Hostname()
	var b strings.Builder
	for _, c := range strings.ToLower(host) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
			b.WriteRune(c)
		case c == '.':
			b.WriteByte('-')
		}
		if b.Len() >= 48 {
			break
		}
	}
	name := strings.Trim(b.String(), "-")
	if name == "" {
		name = "herald"
	}
	return fmt.Sprintf("%s-%04x", name, rand.Uint32N(1<<16))
}

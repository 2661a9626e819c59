package brokertest

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/broker"
	"github.com/heraldhq/herald/internal/poll"
)

// testPresence: a broker that is also a broker.PresenceStore keeps each
// node's latest report byte-exact, shows every node's report to every
// node, drops a report once its ttl passes without a new one, refuses bad
// node names and ttls, and fails with ErrClosed after Close.
func (s *suite) testPresence(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	store, ok := b.(broker.PresenceStore)
	if !ok {
		t.Skip("the broker is not a broker.PresenceStore")
	}
	read := func(st broker.PresenceStore) map[string][]byte {
		t.Helper()
		m, err := st.Presence(ctx)
		if err != nil {
			t.Fatalf("Presence: %v", err)
		}
		return m
	}
	if m := read(store); len(m) != 0 {
		t.Fatalf("a fresh broker has %d presence reports", len(m))
	}
	first := []byte("\x00first\xff") // opaque bytes, not UTF-8
	if err := store.ReportPresence(ctx, "node-a", first, time.Minute); err != nil {
		t.Fatalf("ReportPresence: %v", err)
	}
	second := []byte(`{"topics":{"orders.eu":3}}`)
	buf := append([]byte(nil), second...)
	if err := store.ReportPresence(ctx, "node-a", buf, time.Minute); err != nil {
		t.Fatalf("ReportPresence again: %v", err)
	}
	clear(buf) // the node reuses its buffer for the next report
	if m := read(store); len(m) != 1 || !bytes.Equal(m["node-a"], second) {
		t.Fatalf("Presence after two reports of node-a = %q, want only the second, as it was when reported", m)
	}

	other := store
	if s.opts.NewNode != nil {
		if other, ok = s.newNode(t, b).(broker.PresenceStore); !ok {
			t.Fatal("the broker is a broker.PresenceStore but another node on it is not")
		}
	}
	// A short-lived report, from the other node when there is one: it is
	// seen by both, and then by neither once its ttl passed.
	if err := other.ReportPresence(ctx, "node-b", []byte("b"), time.Second); err != nil {
		t.Fatalf("ReportPresence(node-b): %v", err)
	}
	if m := read(store); !bytes.Equal(m["node-b"], []byte("b")) || !bytes.Equal(m["node-a"], second) {
		t.Fatalf("Presence after node-b reported = %q, want node-a and node-b", m)
	}
	poll.Until(t, s.opts.Timeout+time.Second, "node-b's report to expire", func() bool {
		_, there := read(store)["node-b"]
		return !there
	})
	if m := read(other); len(m) != 1 || !bytes.Equal(m["node-a"], second) {
		t.Fatalf("Presence on the other node after node-b expired = %q, want node-a's report only", m)
	}

	for _, bad := range []struct {
		node string
		ttl  time.Duration
	}{{"", time.Minute}, {"Node-A", time.Minute}, {"a.b", time.Minute}, {strings.Repeat("a", 65), time.Minute}, {"ok", 0}, {"ok", time.Millisecond}} {
		if err := store.ReportPresence(ctx, bad.node, nil, bad.ttl); !errors.Is(err, broker.ErrBadRequest) {
			t.Errorf("ReportPresence(%q, ttl %v) = %v, want ErrBadRequest", bad.node, bad.ttl, err)
		}
	}

	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := store.ReportPresence(ctx, "node-a", nil, time.Minute); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("ReportPresence after Close: %v; want ErrClosed", err)
	}
	if _, err := store.Presence(ctx); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Presence after Close: %v; want ErrClosed", err)
	}
}

// testRevoker: a broker that is also a broker.Revoker lists each subject's
// latest revocation while its time is ahead, to every node, lifts one
// whose time passed, refuses bad subjects, and fails with ErrClosed after
// Close.
func (s *suite) testRevoker(t *testing.T) {
	ctx := s.ctx(t)
	b := s.newBroker(t, roomy)
	rv, ok := b.(broker.Revoker)
	if !ok {
		t.Skip("the broker is not a broker.Revoker")
	}
	list := func(r broker.Revoker) map[string]time.Time {
		t.Helper()
		revs, err := r.Revocations(ctx)
		if err != nil {
			t.Fatalf("Revocations: %v", err)
		}
		m := make(map[string]time.Time, len(revs))
		for _, r := range revs {
			if _, dup := m[r.Subject]; dup {
				t.Fatalf("Revocations lists %q twice", r.Subject)
			}
			m[r.Subject] = r.Until
		}
		return m
	}
	if m := list(rv); len(m) != 0 {
		t.Fatalf("a fresh broker has revocations: %v", m)
	}
	hour := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	subjects := []string{"billing-service", "user:42 / ünïcode", strings.Repeat("x", 1024)}
	for _, sub := range subjects {
		if err := rv.Revoke(ctx, sub, hour); err != nil {
			t.Fatalf("Revoke(%q): %v", sub, err)
		}
	}
	later := hour.Add(time.Hour)
	if err := rv.Revoke(ctx, subjects[0], later); err != nil {
		t.Fatalf("Revoke again: %v", err)
	}
	other := rv
	if s.opts.NewNode != nil {
		if other, ok = s.newNode(t, b).(broker.Revoker); !ok {
			t.Fatal("the broker is a broker.Revoker but another node on it is not")
		}
	}
	m := list(other)
	if len(m) != 3 || !m[subjects[0]].Equal(later) || !m[subjects[1]].Equal(hour) || !m[subjects[2]].Equal(hour) {
		t.Fatalf("Revocations = %v, want %s until %v and the others until %v", m, subjects[0], later, hour)
	}

	// A revocation that runs out, and one lifted with a time in the past.
	if err := other.Revoke(ctx, "brief", time.Now().Add(time.Second)); err != nil {
		t.Fatalf("Revoke(brief): %v", err)
	}
	if err := rv.Revoke(ctx, subjects[1], time.Now().Add(-time.Minute)); err != nil {
		t.Fatalf("Revoke with a past time: %v", err)
	}
	poll.Until(t, s.opts.Timeout+time.Second, "the brief revocation to run out", func() bool {
		_, there := list(rv)["brief"]
		return !there
	})
	got := slices.Sorted(func(yield func(string) bool) {
		for s := range list(rv) {
			if !yield(s) {
				return
			}
		}
	})
	if want := []string{subjects[0], subjects[2]}; !slices.Equal(got, want) {
		t.Fatalf("Revocations after one ran out and one was lifted: %q, want %q", got, want)
	}

	for _, bad := range []string{"", strings.Repeat("x", 1025), "\xff\xfe"} {
		if err := rv.Revoke(ctx, bad, hour); !errors.Is(err, broker.ErrBadRequest) {
			t.Errorf("Revoke(%q) = %v, want ErrBadRequest", broker.Printable(bad), err)
		}
	}

	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := rv.Revoke(ctx, "late", hour); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Revoke after Close: %v; want ErrClosed", err)
	}
	if _, err := rv.Revocations(ctx); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Revocations after Close: %v; want ErrClosed", err)
	}
}

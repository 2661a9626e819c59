package memory

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/broker"
)

// adminState holds the reports of broker.PresenceStore and the
// revocations of broker.Revoker: one node's worth, as the memory broker
// serves one node. Its lock is taken alone.
type adminState struct {
	mu      sync.Mutex
	reports map[string]report
	revoked map[string]time.Time
}

type report struct {
	data    []byte
	expires time.Time
}

// ReportPresence implements broker.PresenceStore.
func (b *Broker) ReportPresence(ctx context.Context, node string, data []byte, ttl time.Duration) error {
	if err := b.adminCall(ctx); err != nil {
		return err
	}
	if err := broker.ValidNode(node); err != nil {
		return err
	}
	if err := broker.ValidTTL(ttl); err != nil {
		return err
	}
	a := &b.admin
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reports == nil {
		a.reports = make(map[string]report)
	}
	a.reports[node] = report{data: append([]byte(nil), data...), expires: b.opts.Now().Add(ttl)}
	return nil
}

// Presence implements broker.PresenceStore.
func (b *Broker) Presence(ctx context.Context) (map[string][]byte, error) {
	if err := b.adminCall(ctx); err != nil {
		return nil, err
	}
	a := &b.admin
	a.mu.Lock()
	defer a.mu.Unlock()
	now := b.opts.Now()
	out := make(map[string][]byte, len(a.reports))
	for node, r := range a.reports {
		if !now.Before(r.expires) {
			delete(a.reports, node)
			continue
		}
		out[node] = r.data
	}
	return out, nil
}

// Revoke implements broker.Revoker.
func (b *Broker) Revoke(ctx context.Context, subject string, until time.Time) error {
	if err := b.adminCall(ctx); err != nil {
		return err
	}
	if err := broker.ValidSubject(subject); err != nil {
		return err
	}
	a := &b.admin
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.revoked == nil {
		a.revoked = make(map[string]time.Time)
	}
	a.revoked[subject] = until
	a.pruneLocked(b.opts.Now())
	return nil
}

// Revocations implements broker.Revoker.
func (b *Broker) Revocations(ctx context.Context) ([]broker.Revocation, error) {
	if err := b.adminCall(ctx); err != nil {
		return nil, err
	}
	a := &b.admin
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pruneLocked(b.opts.Now())
	out := make([]broker.Revocation, 0, len(a.revoked))
	for s, until := range maps.All(a.revoked) {
		out = append(out, broker.Revocation{Subject: s, Until: until})
	}
	return out, nil
}

// pruneLocked forgets the revocations whose time has passed.
func (a *adminState) pruneLocked(now time.Time) {
	for s, until := range a.revoked {
		if !now.Before(until) {
			delete(a.revoked, s)
		}
	}
}

// adminCall fails a call of ctx that ended or of a closed broker.
func (b *Broker) adminCall(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return broker.ErrClosed
	}
	return nil
}

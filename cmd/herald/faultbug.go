//go:build faultbug

// This file makes a deliberately broken Herald that is never shipped: the
// fault suite (internal/faults, make faults) builds it with -tags faultbug
// to show that its checker catches the bug. It acknowledges a publish that
// the broker refused as unavailable, under the position after the last
// one accepted: the publisher is told that an event was stored that no
// subscriber will ever read.

package main

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/broker"
)

// healthyBackend is a backend that reports its health (as JetStream and
// Redis do): the wrapper keeps that capability visible.
type healthyBackend interface {
	backend
	broker.HealthChecker
}

// ackUnaccepted is the bug.
type ackUnaccepted struct {
	healthyBackend
	last atomic.Uint64 // the last position the broker gave
}

func faulty(b backend) backend {
	if hb, ok := b.(healthyBackend); ok {
		return &ackUnaccepted{healthyBackend: hb}
	}
	return b
}

func (b *ackUnaccepted) Publish(ctx context.Context, ev *broker.Event) (broker.PublishResult, error) {
	res, err := b.healthyBackend.Publish(ctx, ev)
	switch {
	case err == nil:
		b.last.Store(max(b.last.Load(), res.Seq))
	case errors.Is(err, broker.ErrUnavailable):
		ev.Seq, ev.Time = b.last.Load()+1, time.Now()
		return broker.PublishResult{Seq: ev.Seq}, nil
	}
	return res, err
}

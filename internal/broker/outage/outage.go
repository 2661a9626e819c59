// Package outage logs a broker backend's outages: one line when one
// begins, one when it ends, however many calls fail in between. The
// networked backends share it through package remote; it knows nothing
// of any backend.
package outage

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Log tracks whether the broker is out. Only the backend's health monitor,
// after a successful check, ends an outage (Up); a failure of a call that
// began before the last recovery belongs to the outage already logged and
// starts no new one. The zero Log needs Logger and Broker set before use.
//
// A recovery is logged ("broker back") only once the broker has gone
// Settle without a new failure: a broker that answers the health check
// but fails the next calls (a JetStream whose disk is full, one that
// lost its quorum) is one outage, logged once each way, however often it
// seems to come back. Out reports the recovery at once, so calls and
// readiness do not wait for the log.
type Log struct {
	Logger *slog.Logger
	Broker string        // the backend's name in the log lines, e.g. "nats"
	Settle time.Duration // 0: a recovery is logged at once

	out   atomic.Bool // read without mu on every call
	mu    sync.Mutex
	since time.Time // when the outage began
	upAt  time.Time // when the last recovery was
	// settling is the timer that logs the last recovery once it has
	// lasted Settle; nil when none is pending. gen tells a timer that
	// fires after it was stopped that its recovery is over.
	settling *time.Timer
	gen      uint64
}

// Out reports whether an outage is going on.
func (o *Log) Out() bool { return o.out.Load() }

// Down records a failure of a call that began at callStarted.
func (o *Log) Down(err error, callStarted time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.out.Load() || callStarted.Before(o.upAt) {
		return
	}
	o.out.Store(true)
	if o.settling != nil {
		// The last recovery did not last: the same outage goes on.
		o.settling.Stop()
		o.settling = nil
		o.gen++
		return
	}
	o.since = time.Now()
	o.Logger.Warn("broker unavailable", "broker", o.Broker, "err", err)
}

// Up ends the outage, if there is one.
func (o *Log) Up() {
	if !o.out.Load() {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.out.Load() {
		return
	}
	o.out.Store(false)
	o.upAt = time.Now()
	if o.Settle <= 0 {
		o.logBack()
		return
	}
	o.gen++
	gen := o.gen
	o.settling = time.AfterFunc(o.Settle, func() { o.settled(gen) })
}

// settled logs the recovery gen once it has lasted Settle.
func (o *Log) settled(gen uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.settling == nil || o.gen != gen {
		return
	}
	o.settling = nil
	o.logBack()
}

// logBack logs the end of the outage, which lasted until the last
// recovery; with o.mu held.
func (o *Log) logBack() {
	o.Logger.Info("broker back", "broker", o.Broker, "after", o.upAt.Sub(o.since).Round(time.Millisecond))
}

// Close drops a recovery not yet logged: the backend is closing.
func (o *Log) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.settling != nil {
		o.settling.Stop()
		o.settling = nil
		o.gen++
	}
}

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
type Log struct {
	Logger *slog.Logger
	Broker string // the backend's name in the log lines, e.g. "nats"

	out   atomic.Bool // read without mu on every call
	mu    sync.Mutex
	since time.Time // when the outage began
	upAt  time.Time // when the last one ended
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
	o.Logger.Info("broker back", "broker", o.Broker, "after", time.Since(o.since).Round(time.Millisecond))
}

package remote

import (
	"context"
	"time"
)

// Start starts the monitor, which confirms recovery after a failure: once
// kicked, it calls probe, with backoff, until the server answers, and then
// logs "broker back" (once per outage) unless the server turned out to
// hold another log. probe returns an error when the server did not
// answer, which becomes the outage's cause; it checks the log itself and
// calls Break when it is another.
func (l *Link) Start(probe func(ctx context.Context) error) {
	l.wg.Go(func() { l.monitor(probe) })
}

func (l *Link) monitor(probe func(ctx context.Context) error) {
	for {
		select {
		case <-l.stop:
			return
		case <-l.recheck:
		}
		wait := 100 * time.Millisecond
		for {
			started := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), l.opts.Timeout)
			err := probe(ctx)
			cancel()
			if err == nil {
				if l.Broken() == nil {
					l.outage.Up()
				}
				break
			}
			if l.closed.Load() {
				return
			}
			l.outage.Down(err, started)
			select {
			case <-l.stop:
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 5*time.Second)
		}
	}
}

// Confirm notes a successful call: during an outage, it has the monitor
// check whether the server is back (and say so, once).
func (l *Link) Confirm() {
	if l.outage.Out() {
		l.Kick()
	}
}

// Kick asks the monitor to check the server soon.
func (l *Link) Kick() {
	select {
	case l.recheck <- struct{}{}:
	default:
	}
}

// Down notes that the connection to the server was lost now, the start of
// an outage unless one is going on or the Link is closed.
func (l *Link) Down(err error) {
	if !l.closed.Load() {
		l.outage.Down(err, time.Now())
	}
}

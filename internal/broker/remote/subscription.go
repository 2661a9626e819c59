package remote

import (
	"context"
	"sync"
	"sync/atomic"
)

// A Subscription is the goroutine of one Broker.Subscribe, as a Link runs
// it.
type Subscription struct {
	stopped   atomic.Bool
	once      sync.Once
	cancel    context.CancelFunc // ends the context run is given
	interrupt func()
}

// Stopped reports whether the subscription was halted. The backend's run
// function checks it before each deliver call and returns once it holds.
func (s *Subscription) Stopped() bool { return s.stopped.Load() }

// halt stops the subscription: its goroutine ends soon after, without
// another deliver call.
func (s *Subscription) halt() {
	s.once.Do(func() {
		s.stopped.Store(true)
		s.cancel()
		if s.interrupt != nil {
			s.interrupt()
		}
	})
}

// Subscribe runs run in a goroutine of its own. The subscription is
// halted when ctx ends, when run returns, or by Close, which waits for run
// to return: halting cancels run's context and calls interrupt, which
// must wake run wherever the backend's client may keep it waiting. After
// Close it fails with ErrClosed, and calls interrupt.
func (l *Link) Subscribe(ctx context.Context, interrupt func(), run func(ctx context.Context, s *Subscription)) error {
	runCtx, stopRun := context.WithCancel(context.Background())
	s := &Subscription{cancel: stopRun, interrupt: interrupt}
	l.mu.Lock()
	if l.closed.Load() {
		l.mu.Unlock()
		s.halt()
		return errClosed()
	}
	l.subs[s] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	release := context.AfterFunc(ctx, s.halt)
	go func() {
		defer l.wg.Done()
		defer func() {
			release()
			l.mu.Lock()
			delete(l.subs, s)
			l.mu.Unlock()
			s.halt()
		}()
		run(runCtx, s)
	}()
	return nil
}

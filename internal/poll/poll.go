// Package poll waits, in tests, for a condition that something else makes
// true: it checks on a ticker, bounded by a timeout, where a sleep would
// guess how long the wait takes. It imports only the standard library, so
// that any test of the module can use it.
package poll

import (
	"fmt"
	"testing"
	"time"
)

// Interval is how often a condition is checked.
const Interval = 10 * time.Millisecond

// Until checks cond at once and then every Interval until it holds, and
// fails tb if it does not hold within timeout; what names the condition
// in the failure ("after 10s, still waiting for <what>"). Like
// tb.FailNow, call it from the test's goroutine only; elsewhere use Wait.
func Until(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	if err := Wait(timeout, what, cond); err != nil {
		tb.Fatal(err)
	}
}

// Wait is Until for any goroutine: it reports the failure as an error.
func Wait(timeout time.Duration, what string, cond func() bool) error {
	if cond() {
		return nil
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if cond() {
				return nil
			}
		case <-deadline.C:
			if cond() {
				return nil
			}
			return fmt.Errorf("after %v, still waiting for %s", timeout, what)
		}
	}
}

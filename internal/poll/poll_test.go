package poll

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWait(t *testing.T) {
	var n atomic.Int32
	go func() {
		for n.Load() < 3 {
			n.Add(1)
		}
	}()
	if err := Wait(10*time.Second, "n to reach 3", func() bool { return n.Load() >= 3 }); err != nil {
		t.Fatal(err)
	}
	if err := Wait(0, "what holds already", func() bool { return true }); err != nil {
		t.Fatalf("a condition that holds at once: %v", err)
	}
	err := Wait(3*Interval, "the impossible", func() bool { return false })
	if err == nil || !strings.Contains(err.Error(), "still waiting for the impossible") {
		t.Fatalf("a condition that never holds: %v; want an error naming it", err)
	}
}

func TestUntil(t *testing.T) {
	calls := 0
	Until(t, 10*time.Second, "the third call", func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Fatalf("cond called %d times; want 3", calls)
	}
}

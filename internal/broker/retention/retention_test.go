package retention

import (
	"testing"
	"time"
)

func TestDefault(t *testing.T) {
	for _, c := range []struct {
		events       int
		age, window  time.Duration
		wantEvents   int
		wantAge, win time.Duration
	}{
		{0, 0, 0, DefaultMaxEvents, DefaultMaxAge, DefaultIdempotencyWindow},
		{-1, -time.Second, -time.Second, DefaultMaxEvents, DefaultMaxAge, DefaultIdempotencyWindow},
		{5, time.Minute, time.Second, 5, time.Minute, time.Second},
	} {
		events, age, window := c.events, c.age, c.window
		Default(&events, &age, &window)
		if events != c.wantEvents || age != c.wantAge || window != c.win {
			t.Errorf("Default(%d, %v, %v) = %d, %v, %v; want %d, %v, %v", c.events, c.age, c.window, events, age, window, c.wantEvents, c.wantAge, c.win)
		}
	}
}

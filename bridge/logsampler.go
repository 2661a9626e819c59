package bridge

import (
	"sync"
	"time"
)

// logSamplerEvery is how often a logSampler lets a line through.
const logSamplerEvery = 30 * time.Second

// A logSampler counts occurrences of one condition and lets a log line
// through for the first and then at most once per logSamplerEvery, with
// how many there were since the last line: a condition that hits every
// client at once (an outage) is one line, not one per client.
type logSampler struct {
	mu     sync.Mutex
	last   time.Time
	n      int
	logged bool
}

// note counts an occurrence at now and reports whether to log it, with
// the occurrences the line stands for.
func (l *logSampler) note(now time.Time) (n int, log bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if l.logged && now.Sub(l.last) < logSamplerEvery {
		return 0, false
	}
	n, l.n = l.n, 0
	l.last, l.logged = now, true
	return n, true
}

package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ErrLimited: a limit was reached (gRPC RESOURCE_EXHAUSTED, HTTP 429).
var ErrLimited = errors.New("limit reached")

// LimitError is an ErrLimited that says when to retry.
type LimitError struct {
	What       string
	RetryAfter time.Duration
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s: %s; retry after %s", ErrLimited, e.What, e.RetryAfter.Round(time.Millisecond))
}

// Unwrap makes a LimitError an ErrLimited.
func (e *LimitError) Unwrap() error { return ErrLimited }

// publishLimiter enforces a publish rate per credential (Permissions.RateKey).
type publishLimiter struct {
	limit rate.Limit
	burst int

	mu   sync.Mutex
	keys map[string]*rate.Limiter
}

func newPublishLimiter(perSecond float64, burst int) *publishLimiter {
	if perSecond <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = max(1, int(perSecond))
	}
	return &publishLimiter{limit: rate.Limit(perSecond), burst: burst, keys: make(map[string]*rate.Limiter)}
}

// allow takes one event from key's budget, or says when to retry.
func (l *publishLimiter) allow(key string) error {
	if l == nil || key == "" {
		return nil
	}
	now := time.Now()
	l.mu.Lock()
	lim := l.keys[key]
	if lim == nil {
		if len(l.keys) >= 100000 {
			l.forgetIdle(now)
		}
		lim = rate.NewLimiter(l.limit, l.burst)
		l.keys[key] = lim
	}
	r := lim.ReserveN(now, 1)
	l.mu.Unlock()
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return &LimitError{What: fmt.Sprintf("publish rate of %g events/s for this token", float64(l.limit)), RetryAfter: d}
	}
	return nil
}

// forgetIdle drops limiters whose budget is full again: forgetting them
// changes nothing.
func (l *publishLimiter) forgetIdle(now time.Time) {
	for k, lim := range l.keys {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.keys, k)
		}
	}
}

// connLimiter bounds concurrent SSE streams in total and per client IP.
type connLimiter struct {
	total, perIP int
	trusted      []netip.Prefix

	mu     sync.Mutex
	open   int
	perIPs map[netip.Addr]int
}

// acquire counts a new stream from r, or refuses it. release undoes it.
func (l *connLimiter) acquire(r *http.Request) (release func(), err error) {
	ip := l.clientIP(r)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total > 0 && l.open >= l.total {
		return nil, &LimitError{What: fmt.Sprintf("this server's %d concurrent streams are in use", l.total), RetryAfter: 5 * time.Second}
	}
	if l.perIP > 0 && l.perIPs[ip] >= l.perIP {
		return nil, &LimitError{What: fmt.Sprintf("%d concurrent streams per client address", l.perIP), RetryAfter: 5 * time.Second}
	}
	l.open++
	l.perIPs[ip]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.open--
		if l.perIPs[ip]--; l.perIPs[ip] <= 0 {
			delete(l.perIPs, ip)
		}
	}, nil
}

// clientIP is the connection's address, or, when that is a trusted proxy,
// the right-most address in X-Forwarded-For that is not a trusted proxy.
func (l *connLimiter) clientIP(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, _ := netip.ParseAddr(host)
	ip = ip.Unmap()
	if !l.isTrusted(ip) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		hop = hop.Unmap()
		if !l.isTrusted(hop) {
			return hop
		}
		ip = hop
	}
	return ip
}

func (l *connLimiter) isTrusted(ip netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

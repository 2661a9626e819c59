package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
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

// connLimiter bounds concurrent streams, SSE and gRPC Subscribe alike, in
// total and per client IP, and gRPC Subscribe streams per connection.
type connLimiter struct {
	total, perIP int
	perConn      int // Subscribe streams per gRPC connection; 0: no limit
	trusted      []netip.Prefix

	mu       sync.Mutex
	open     int
	perIPs   map[netip.Addr]int
	perConns map[string]int // by the connection's remote address
}

// acquireConn counts a new gRPC Subscribe stream on the connection from
// addr (its remote address) by client ip, or refuses it. release undoes it.
func (l *connLimiter) acquireConn(addr string, ip netip.Addr) (release func(), err error) {
	l.mu.Lock()
	if l.perConn > 0 && l.perConns[addr] >= l.perConn {
		l.mu.Unlock()
		return nil, &LimitError{What: fmt.Sprintf("%d concurrent Subscribe streams per connection", l.perConn), RetryAfter: 5 * time.Second}
	}
	l.mu.Unlock()
	releaseIP, err := l.acquire(ip)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.perConns == nil {
		l.perConns = make(map[string]int)
	}
	l.perConns[addr]++
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		if l.perConns[addr]--; l.perConns[addr] <= 0 {
			delete(l.perConns, addr)
		}
		l.mu.Unlock()
		releaseIP()
	}, nil
}

// acquire counts a new stream from client ip, or refuses it. release
// undoes it.
func (l *connLimiter) acquire(ip netip.Addr) (release func(), err error) {
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

// clientIP is the address of r's client (forwardedIP).
func (l *connLimiter) clientIP(r *http.Request) netip.Addr {
	return l.forwardedIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"))
}

// grpcClientIP is the address of a gRPC call's client (forwardedIP), from
// its peer and x-forwarded-for metadata.
func (l *connLimiter) grpcClientIP(ctx context.Context) (remote string, ip netip.Addr) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "", netip.Addr{}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	return p.Addr.String(), l.forwardedIP(p.Addr.String(), md.Get("x-forwarded-for"))
}

// forwardedIP is the connection's address, or, when that is a trusted
// proxy, the right-most address in X-Forwarded-For that is not a trusted
// proxy.
func (l *connLimiter) forwardedIP(remote string, forwarded []string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, _ := netip.ParseAddr(host)
	ip = ip.Unmap()
	if !l.isTrusted(ip) {
		return ip
	}
	hops := strings.Split(strings.Join(forwarded, ","), ",")
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

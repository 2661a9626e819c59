package bridge

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// grpcCredentials reads a bearer token from the "authorization" metadata
// (which grpc-gateway fills from the REST Authorization header) and the
// client certificates of a mutual TLS connection.
func grpcCredentials(ctx context.Context) auth.Credentials {
	var c auth.Credentials
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			c.Token = bearer(v[0])
		}
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			c.Certificates = ti.State.VerifiedChains[0]
		}
	}
	return c
}

// httpCredentials reads a subscriber's token from, in order, the
// Authorization header (fetch-based clients), the cookie (EventSource with
// withCredentials) and, if allowed, the access_token query parameter.
func httpCredentials(r *http.Request, cookie string, queryToken bool) auth.Credentials {
	if h := r.Header.Get("Authorization"); h != "" {
		return auth.Credentials{Token: bearer(h)}
	}
	if cookie != "" {
		if c, err := r.Cookie(cookie); err == nil && c.Value != "" {
			return auth.Credentials{Token: c.Value}
		}
	}
	if queryToken {
		if t := r.URL.Query().Get("access_token"); t != "" {
			return auth.Credentials{Token: t}
		}
	}
	return auth.Credentials{}
}

// bearer strips the "Bearer " scheme. Anything else is passed on as is and
// fails verification with a clear message.
func bearer(h string) string {
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return h
}

// authorizeSubscribe checks that perms allow every pattern. A subscription
// with one forbidden pattern is refused as a whole.
func authorizeSubscribe(creds auth.Credentials, perms auth.Permissions, patterns []broker.Pattern) error {
	for _, p := range patterns {
		if broker.CoveredBy(perms.Subscribe, p) {
			continue
		}
		if creds.Empty() {
			return fmt.Errorf("%w: topic %q is not public: present a token (Authorization header, cookie or access_token)", auth.ErrUnauthenticated, p.String())
		}
		return fmt.Errorf("%w: these credentials do not allow subscribing to %q", auth.ErrPermissionDenied, p.String())
	}
	return nil
}

func authorizePublish(creds auth.Credentials, perms auth.Permissions, topic string) error {
	if broker.MatchAny(perms.Publish, topic) {
		return nil
	}
	if creds.Empty() {
		return fmt.Errorf("%w: publishing needs a token (authorization: Bearer ...)", auth.ErrUnauthenticated)
	}
	return fmt.Errorf("%w: these credentials do not allow publishing to %q", auth.ErrPermissionDenied, topic)
}

// afterExpiry calls f in its own goroutine when perms expire; it returns
// nil for permissions that do not.
func afterExpiry(perms auth.Permissions, f func()) *time.Timer {
	if perms.Expires.IsZero() {
		return nil
	}
	return time.AfterFunc(time.Until(perms.Expires), f)
}

// expiryTimer fires when perms expire; its channel is nil (never ready)
// for permissions that do not.
func expiryTimer(perms auth.Permissions) (<-chan time.Time, func() bool) {
	if perms.Expires.IsZero() {
		return nil, func() bool { return false }
	}
	t := time.NewTimer(time.Until(perms.Expires))
	return t.C, t.Stop
}

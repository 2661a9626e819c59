package bridge

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Credentials are what a caller presented.
type Credentials struct {
	// Token is a bearer token, or "".
	Token string
	// Certificates is the verified client certificate chain of a mutual
	// TLS connection (leaf first), or nil.
	Certificates []*x509.Certificate
}

// Empty reports whether the caller presented nothing.
func (c Credentials) Empty() bool { return c.Token == "" && len(c.Certificates) == 0 }

// Permissions are what a caller may do.
type Permissions struct {
	// Publish and Subscribe are the topics (or patterns) allowed.
	Publish, Subscribe []Pattern
	// Expires is when the credentials stop being valid; zero for never.
	// A stream open with them ends then, telling the client to reconnect.
	Expires time.Time
	// RateKey identifies the credentials for the publish rate limit; ""
	// for no limit.
	RateKey string
}

// An Authenticator turns credentials into permissions. It is called for
// every publish request (once per PublishStream) and every subscription.
// Empty credentials are valid input: they get what is public, if anything.
// Errors must wrap ErrUnauthenticated with a message that names the problem
// and no secret.
type Authenticator interface {
	Authenticate(ctx context.Context, c Credentials) (Permissions, error)
}

// Errors of authentication and limits.
var (
	// ErrUnauthenticated: credentials are missing, malformed, expired or
	// not signed by a trusted key (gRPC UNAUTHENTICATED, HTTP 401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied: valid credentials that do not allow the topic
	// (gRPC PERMISSION_DENIED, HTTP 403).
	ErrPermissionDenied = errors.New("permission denied")
	// ErrLimited: a limit was reached (gRPC RESOURCE_EXHAUSTED, HTTP 429).
	ErrLimited = errors.New("limit reached")
)

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

// grpcCredentials reads a bearer token from the "authorization" metadata
// (which grpc-gateway fills from the REST Authorization header) and the
// client certificates of a mutual TLS connection.
func grpcCredentials(ctx context.Context) Credentials {
	var c Credentials
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
func httpCredentials(r *http.Request, cookie string, queryToken bool) Credentials {
	if h := r.Header.Get("Authorization"); h != "" {
		return Credentials{Token: bearer(h)}
	}
	if cookie != "" {
		if c, err := r.Cookie(cookie); err == nil && c.Value != "" {
			return Credentials{Token: c.Value}
		}
	}
	if queryToken {
		if t := r.URL.Query().Get("access_token"); t != "" {
			return Credentials{Token: t}
		}
	}
	return Credentials{}
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
func authorizeSubscribe(creds Credentials, perms Permissions, patterns []Pattern) error {
	for _, p := range patterns {
		if CoveredBy(perms.Subscribe, p) {
			continue
		}
		if creds.Empty() {
			return fmt.Errorf("%w: topic %q is not public: present a token (Authorization header, cookie or access_token)", ErrUnauthenticated, p.String())
		}
		return fmt.Errorf("%w: these credentials do not allow subscribing to %q", ErrPermissionDenied, p.String())
	}
	return nil
}

func authorizePublish(creds Credentials, perms Permissions, topic string) error {
	if MatchAny(perms.Publish, topic) {
		return nil
	}
	if creds.Empty() {
		return fmt.Errorf("%w: publishing needs a token (authorization: Bearer ...)", ErrUnauthenticated)
	}
	return fmt.Errorf("%w: these credentials do not allow publishing to %q", ErrPermissionDenied, topic)
}

// expiryTimer fires when perms expire; its channel is nil (never ready)
// for permissions that do not.
func expiryTimer(perms Permissions) (<-chan time.Time, func() bool) {
	if perms.Expires.IsZero() {
		return nil, func() bool { return false }
	}
	t := time.NewTimer(time.Until(perms.Expires))
	return t.C, t.Stop
}

// Package auth is the contract between Herald's server and the ways it
// authenticates callers: what a caller presents (Credentials), what it may
// do (Permissions), and the Authenticator that turns one into the other.
// The server checks Permissions; an implementation only verifies.
//
// jwtauth (below this directory) verifies JSON Web Tokens and client
// certificates; Dev opens everything, for development only.
package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"time"

	"github.com/heraldhq/herald/internal/broker"
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
	Publish, Subscribe []broker.Pattern
	// Schemas are the protobuf packages whose types the caller may add or
	// change by pushing schemas, as patterns in the topic syntax (a
	// package's dots separate its tokens: "shop.v1", "shop.>"). Empty:
	// the caller may push no schemas at all.
	Schemas []broker.Pattern
	// Expires is when the credentials stop being valid; zero for never.
	// A stream open with them ends then, telling the client to reconnect.
	Expires time.Time
	// RateKey identifies the credentials for the publish and schema push
	// rate limits; "" for no limit.
	RateKey string
	// Admin grants the admin API (herald.v1.AdminService: topics,
	// presence, history, nodes, revocations). It implies no publish or
	// subscribe rights.
	Admin bool
	// Subject is the token's sub claim, or "": what a revocation names
	// (herald revoke --subject), ending the streams opened with it.
	Subject string
}

// permsKey is the context key of a caller's Permissions.
type permsKey struct{}

// NewContext returns ctx carrying the permissions of the caller it serves.
// The server sets it once it has authenticated a caller, for services
// behind it that authorize by themselves (the schema registry checks a
// push against Permissions.Schemas); only code in the process can set it.
func NewContext(ctx context.Context, p Permissions) context.Context {
	return context.WithValue(ctx, permsKey{}, p)
}

// FromContext returns the permissions NewContext put in ctx. ok is false
// for a call that did not come through the server's authentication (an
// in-process caller), which callees treat as trusted.
func FromContext(ctx context.Context) (p Permissions, ok bool) {
	p, ok = ctx.Value(permsKey{}).(Permissions)
	return p, ok
}

// An Authenticator turns credentials into permissions. It is called for
// every publish request (once per PublishStream), every subscription and
// every schema push.
// Empty credentials are valid input: they get what is public, if anything.
// Errors must wrap ErrUnauthenticated with a message that names the problem
// and no secret.
type Authenticator interface {
	Authenticate(ctx context.Context, c Credentials) (Permissions, error)
}

// Errors of authentication and authorization.
var (
	// ErrUnauthenticated: credentials are missing, malformed, expired or
	// not signed by a trusted key (gRPC UNAUTHENTICATED, HTTP 401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied: valid credentials that do not allow the topic,
	// or the protobuf package of a schema push (gRPC PERMISSION_DENIED,
	// HTTP 403).
	ErrPermissionDenied = errors.New("permission denied")
)

// Dev returns an Authenticator that allows everyone everything: for
// development on a laptop only.
func Dev() Authenticator { return devAuth{} }

type devAuth struct{}

// Everything is the one pattern that matches and covers every topic (and,
// as a Schemas grant, every package).
var Everything = func() []broker.Pattern {
	p, err := broker.ParsePattern(">")
	if err != nil {
		panic(err)
	}
	return []broker.Pattern{p}
}()

func (devAuth) Authenticate(context.Context, Credentials) (Permissions, error) {
	return Permissions{Publish: Everything, Subscribe: Everything, Schemas: Everything, Admin: true}, nil
}

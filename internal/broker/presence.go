package broker

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"
)

// A PresenceStore is a Broker through which the nodes sharing it tell each
// other what they serve: each node saves a report of its own (its
// subscribers per topic, its publishes, its health) every few seconds, and
// any node reads the reports of all. A node that stops reporting (it died)
// drops out once its report expires.
//
// Contract, which every implementation must keep (internal/broker/brokertest
// checks it):
//
//   - ReportPresence replaces the node's report with report, opaque bytes
//     the broker stores as they are, and keeps no reference to report once
//     it returns (the node reuses it for its next report). The report
//     expires ttl after it was saved, unless the node reports again:
//     Presence never returns it after that (a backend whose store expires
//     coarsely filters by the time it saved it). node is 1 to 64 bytes of [a-z0-9-]; anything else fails
//     with ErrBadRequest, as does a ttl below one second.
//   - Presence returns the latest unexpired report of every node, by node.
//     What one node saved, every node sharing the broker reads.
//   - A cancelled or expired ctx fails the call with an error wrapping
//     ctx.Err(); after Close the calls fail with ErrClosed; a backend that
//     cannot answer fails with ErrUnavailable, as its other calls do.
type PresenceStore interface {
	// ReportPresence saves the node's report for ttl.
	ReportPresence(ctx context.Context, node string, report []byte, ttl time.Duration) error
	// Presence returns every node's unexpired report.
	Presence(ctx context.Context) (map[string][]byte, error)
}

// A Revoker is a Broker that keeps the revocations of token subjects: a
// subject revoked until a time has its streams ended and its tokens refused,
// on every node sharing the broker, until then.
//
// Contract, which every implementation must keep (internal/broker/brokertest
// checks it):
//
//   - Revoke records that subject is revoked until until, replacing any
//     earlier revocation of the subject (a later or an earlier time alike).
//     subject is 1 to 1,024 bytes of valid UTF-8; anything else fails with
//     ErrBadRequest. A time in the past is no error: it lifts the
//     revocation.
//   - Revocations returns every revocation whose time is still ahead, as
//     recorded by any node; it may leave out those whose time has passed,
//     and removes them in time (they never pile up).
//   - A cancelled or expired ctx fails the call with an error wrapping
//     ctx.Err(); after Close the calls fail with ErrClosed; a backend that
//     cannot answer fails with ErrUnavailable, as its other calls do.
type Revoker interface {
	// Revoke revokes subject until until.
	Revoke(ctx context.Context, subject string, until time.Time) error
	// Revocations returns the revocations in force.
	Revocations(ctx context.Context) ([]Revocation, error)
}

// A Revocation is a subject revoked until a time.
type Revocation struct {
	Subject string
	Until   time.Time
}

// ValidNode checks a node name of PresenceStore.ReportPresence.
func ValidNode(node string) error {
	if node == "" || len(node) > 64 {
		return badRequest("a node name is 1 to 64 bytes, got %d", len(node))
	}
	for i := 0; i < len(node); i++ {
		c := node[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return badRequest("node name %q: only a-z, 0-9 and - are allowed", Printable(node))
		}
	}
	return nil
}

// ValidSubject checks a subject of Revoker.Revoke.
func ValidSubject(subject string) error {
	if subject == "" || len(subject) > 1024 {
		return badRequest("a subject is 1 to 1024 bytes, got %d", len(subject))
	}
	if !utf8.ValidString(subject) {
		return badRequest("the subject is not valid UTF-8")
	}
	return nil
}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadRequest}, args...)...)
}

// ValidTTL checks a ttl of PresenceStore.ReportPresence.
func ValidTTL(ttl time.Duration) error {
	if ttl < time.Second {
		return badRequest("a presence ttl is at least 1s, got %v", ttl)
	}
	return nil
}

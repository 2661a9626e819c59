package broker

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error Herald returns, whichever layer made it,
// wraps one of them with a message that names the problem; the server maps
// them to gRPC codes and HTTP statuses in exactly one place (bridge.Code).
var (
	// ErrInvalidTopic: a topic name or pattern is malformed.
	ErrInvalidTopic = errors.New("invalid topic")
	// ErrInvalidEvent: the event's type, attributes, idempotency key or
	// payload is malformed or of an unknown type.
	ErrInvalidEvent = errors.New("invalid event")
	// ErrEventTooLarge: the event is over the configured size limit.
	ErrEventTooLarge = errors.New("event too large")
	// ErrBadRequest: a request is malformed.
	ErrBadRequest = errors.New("bad request")
	// ErrUnavailable: the broker cannot take or serve events right now; the
	// call may be retried.
	ErrUnavailable = errors.New("unavailable")
	// ErrClosed: the broker or server is shutting down.
	ErrClosed = errors.New("closed")
	// ErrNotFound: no such route or resource.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a change conflicts with the current state (an
	// incompatible schema redefinition).
	ErrConflict = errors.New("conflict")
)

// FieldViolation is one constraint a payload breaks.
type FieldViolation struct {
	// Field is the path of the offending field, e.g. "items[0].quantity".
	Field string
	// Description says what is wrong.
	Description string
}

// ViolationsError reports a payload that breaks its schema's constraints
// (buf.validate). It is an ErrInvalidEvent.
type ViolationsError struct {
	Type       string
	Violations []FieldViolation
}

func (e *ViolationsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "payload violates the constraints of %s: ", e.Type)
	for i, v := range e.Violations {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(v.Field)
		b.WriteString(": ")
		b.WriteString(v.Description)
	}
	return b.String()
}

// Unwrap makes a ViolationsError an ErrInvalidEvent.
func (e *ViolationsError) Unwrap() error { return ErrInvalidEvent }

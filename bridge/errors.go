package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Sentinel errors. Errors returned by this package and by brokers wrap one
// of them with a message that names the problem; Code maps them to gRPC
// codes and HTTPStatus to HTTP statuses, in exactly one place.
var (
	// ErrInvalidTopic: a topic name or pattern is malformed.
	ErrInvalidTopic = errors.New("invalid topic")
	// ErrInvalidEvent: the event's type, attributes, idempotency key or
	// payload is malformed or of an unknown type.
	ErrInvalidEvent = errors.New("invalid event")
	// ErrEventTooLarge: the event is over the configured size limit.
	ErrEventTooLarge = errors.New("event too large")
	// ErrBadRequest: a subscription request is malformed.
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

// Code returns the gRPC code for err.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	switch {
	case errors.Is(err, ErrInvalidTopic), errors.Is(err, ErrInvalidEvent),
		errors.Is(err, ErrEventTooLarge), errors.Is(err, ErrBadRequest):
		return codes.InvalidArgument
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrClosed):
		return codes.Unavailable
	case errors.Is(err, ErrNotFound):
		return codes.NotFound
	case errors.Is(err, ErrConflict):
		return codes.FailedPrecondition
	case errors.Is(err, ErrUnauthenticated):
		return codes.Unauthenticated
	case errors.Is(err, ErrPermissionDenied):
		return codes.PermissionDenied
	case errors.Is(err, ErrLimited):
		return codes.ResourceExhausted
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Internal
}

// HTTPStatus returns the HTTP status for err, derived from its gRPC code the
// same way grpc-gateway maps codes for the REST API.
func HTTPStatus(err error) int {
	return httpStatusFromCode(Code(err))
}

func httpStatusFromCode(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// grpcError turns err into a gRPC status error. Messages of internal
// errors are not sent to clients.
func grpcError(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	c := Code(err)
	if c == codes.Internal {
		return status.Error(c, "internal error")
	}
	st := status.New(c, err.Error())
	var limit *LimitError
	if errors.As(err, &limit) {
		if withDetails, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(limit.RetryAfter)}); err == nil {
			st = withDetails
		}
	}
	var v *ViolationsError
	if errors.As(err, &v) {
		br := &errdetails.BadRequest{}
		for _, fv := range v.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: fv.Field, Description: fv.Description})
		}
		if withDetails, err := st.WithDetails(br); err == nil {
			st = withDetails
		}
	}
	return st.Err()
}

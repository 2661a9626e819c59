package bridge

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
)

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
	return status.Error(c, err.Error())
}

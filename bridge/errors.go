package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// ErrKeyReused: an idempotency key was used again, within its window, for
// another event (gRPC ALREADY_EXISTS, HTTP 409).
var ErrKeyReused = errors.New("idempotency key reused")

// KeyReusedError is an ErrKeyReused that names the event first published
// with the key.
type KeyReusedError struct {
	Key string
	ID  string // the id of the event first published with Key
}

func (e *KeyReusedError) Error() string {
	return fmt.Sprintf("%s: idempotency_key %q was used for another event (id %s) within the idempotency window; a retry must send the same event, a new event needs a new key", ErrKeyReused, broker.Printable(e.Key), e.ID)
}

// Unwrap makes a KeyReusedError an ErrKeyReused.
func (e *KeyReusedError) Unwrap() error { return ErrKeyReused }

// Code returns the gRPC code for err: the one mapping from Herald's
// sentinel errors (internal/broker, internal/auth, ErrLimited) to codes.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	switch {
	case errors.Is(err, broker.ErrInvalidTopic), errors.Is(err, broker.ErrInvalidEvent),
		errors.Is(err, broker.ErrEventTooLarge), errors.Is(err, broker.ErrBadRequest):
		return codes.InvalidArgument
	case errors.Is(err, broker.ErrUnavailable), errors.Is(err, broker.ErrClosed):
		return codes.Unavailable
	case errors.Is(err, broker.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, broker.ErrConflict):
		return codes.FailedPrecondition
	case errors.Is(err, auth.ErrUnauthenticated):
		return codes.Unauthenticated
	case errors.Is(err, auth.ErrPermissionDenied):
		return codes.PermissionDenied
	case errors.Is(err, ErrLimited):
		return codes.ResourceExhausted
	case errors.Is(err, ErrKeyReused):
		return codes.AlreadyExists
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Internal
}

// HTTPStatus returns the HTTP status for err, derived from its gRPC code
// exactly as grpc-gateway maps codes for the REST API.
func HTTPStatus(err error) int {
	return runtime.HTTPStatusFromCode(Code(err))
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
	var reused *KeyReusedError
	if errors.As(err, &reused) {
		info := &errdetails.ErrorInfo{Reason: "IDEMPOTENCY_KEY_REUSED", Domain: "herald", Metadata: map[string]string{"id": reused.ID}}
		if withDetails, err := st.WithDetails(info); err == nil {
			st = withDetails
		}
	}
	var v *broker.ViolationsError
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

// writeError writes err as the REST API's error body:
// {"code": <gRPC code>, "message": "..."}.
func writeError(w http.ResponseWriter, err error) {
	c := Code(err)
	msg := err.Error()
	if c == codes.Internal { // never show internal causes
		msg = "internal error"
	}
	body, _ := json.Marshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{int(c), msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(HTTPStatus(err))
	_, _ = w.Write(append(body, '\n'))
}

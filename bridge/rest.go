package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/broker"
)

// The REST API's front door. grpc-gateway decodes a request's JSON body
// before it calls the service, so the services' own checks would come after
// the costliest work. Here every request that has a body is authenticated
// and authorized first, from its headers alone; only then is its body read,
// within a deadline and a memory budget shared by all requests, and handed
// to the gateway already read. An unauthenticated or unauthorized request
// costs no more than reading its headers.

// restFront serves the REST routes in front of the gateway.
type restFront struct {
	gw          *runtime.ServeMux
	unmarshal   protojson.UnmarshalOptions // the gateway's, for publish
	pub         *publisher
	schemas     *schemaService // nil: no schema routes
	admin       *adminService
	maxBody     int64
	bodyTimeout time.Duration
	budget      *bodyBudget
}

// accessKey is the context key of the access a REST request was granted
// before its body was read.
type accessKey struct{}

// restAccess is what the front door granted: the caller and the one topic
// it was authorized for (publish), so that the service does not check, or
// count against the rate limit, twice.
type restAccess struct {
	access
	topic string
}

func accessFrom(ctx context.Context) (restAccess, bool) {
	a, ok := ctx.Value(accessKey{}).(restAccess)
	return a, ok
}

// publish serves POST /v1/topics/{topic}/events. It is the busiest REST
// route, so it decodes the body and calls the publisher itself instead of
// through the gateway, which reads a body twice (encoding/json, then
// protojson) and wraps the call in generic plumbing; it answers as the
// gateway would, with the gateway's marshaler and error handler.
func (f *restFront) publish(w http.ResponseWriter, r *http.Request) {
	r, ok := f.authorizeTopic(w, r)
	if !ok {
		return
	}
	body, release, err := f.readBody(w, r)
	if err != nil {
		f.fail(w, r, err)
		return
	}
	defer release()
	req := &heraldv1.PublishRequest{}
	if err := f.unmarshal.Unmarshal(body, req); err != nil {
		f.fail(w, r, status.Errorf(codes.InvalidArgument, "%v", err))
		return
	}
	req.Topic = r.PathValue("topic") // the path wins over the body, as in the gateway
	// The publisher sets gRPC headers (retry-after) on refusals; the
	// stream collects them for the answer.
	var sts runtime.ServerTransportStream
	ctx := grpc.NewContextWithServerTransportStream(context.WithValue(r.Context(), restKey{}, true), &sts)
	resp, err := f.pub.Publish(ctx, req)
	if v := sts.Header().Get("retry-after"); len(v) > 0 {
		w.Header().Set("Retry-After", v[0])
	}
	_, out := runtime.MarshalerForRequest(f.gw, r)
	if err != nil {
		restErrorHandler(ctx, f.gw, out, w, r, err)
		return
	}
	buf, err := out.Marshal(resp)
	if err != nil {
		restErrorHandler(ctx, f.gw, out, w, r, status.Errorf(codes.Internal, "encoding the answer: %v", err))
		return
	}
	w.Header().Set("Content-Type", out.ContentType(resp))
	_, _ = w.Write(buf)
}

// deleteState serves DELETE /v1/topics/{topic}/state, which has no body.
func (f *restFront) deleteState(w http.ResponseWriter, r *http.Request) {
	if r, ok := f.authorizeTopic(w, r); ok {
		f.read(w, r)
	}
}

// authorizeTopic authorizes r to publish to its path's topic, from its
// headers, answering it when it may not.
func (f *restFront) authorizeTopic(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	topic := r.PathValue("topic")
	a, err := f.pub.authenticateCreds(r.Context(), restCredentials(r))
	if err == nil {
		err = f.pub.authorize(a, topic)
	}
	if err != nil {
		f.pub.metrics.countPublish(transportREST, Code(err).String())
		f.fail(w, r, err)
		return nil, false
	}
	ctx := context.WithValue(r.Context(), accessKey{}, restAccess{access: a, topic: topic})
	if f.pub.tracer != nil {
		ctx = f.pub.tracer.fromHeaders(ctx, propagation.HeaderCarrier(r.Header))
	}
	return r.WithContext(ctx), true
}

// registerSchemas serves POST /v1/schemas: the caller must hold a schemas
// grant before its body is read; the schema service checks the packages
// it pushes against the permissions put in the context.
func (f *restFront) registerSchemas(w http.ResponseWriter, r *http.Request) {
	perms, err := f.schemas.authorizeRegister(r.Context(), restCredentials(r))
	if err != nil {
		f.fail(w, r, err)
		return
	}
	ctx := auth.NewContext(context.WithValue(r.Context(), accessKey{}, restAccess{}), perms)
	f.serve(w, r.WithContext(ctx))
}

// adminRead serves the admin API's GET routes: the caller must be admin.
func (f *restFront) adminRead(w http.ResponseWriter, r *http.Request) {
	if err := f.admin.authorizeAdmin(r.Context(), restCredentials(r)); err != nil {
		f.fail(w, r, err)
		return
	}
	f.read(w, r.WithContext(context.WithValue(r.Context(), accessKey{}, restAccess{})))
}

// adminWrite serves the admin API's POST routes: the caller must be admin
// before its body is read.
func (f *restFront) adminWrite(w http.ResponseWriter, r *http.Request) {
	if err := f.admin.authorizeAdmin(r.Context(), restCredentials(r)); err != nil {
		f.fail(w, r, err)
		return
	}
	f.serve(w, r.WithContext(context.WithValue(r.Context(), accessKey{}, restAccess{})))
}

// read serves the routes without a body (GET /v1/schemas...).
func (f *restFront) read(w http.ResponseWriter, r *http.Request) {
	r.Body = http.NoBody
	f.gw.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), restKey{}, true)))
}

// serve reads the body, then lets the gateway decode it and call the
// service.
func (f *restFront) serve(w http.ResponseWriter, r *http.Request) {
	body, release, err := f.readBody(w, r)
	if err != nil {
		f.fail(w, r, err)
		return
	}
	defer release()
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	f.gw.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), restKey{}, true)))
}

// readBody reads r's body within the body timeout, at most maxBody bytes,
// taking the memory it holds from the shared budget before allocating it.
// release gives the memory back once the request is done with it.
func (f *restFront) readBody(w http.ResponseWriter, r *http.Request) (body []byte, release func(), err error) {
	if r.ContentLength > f.maxBody {
		return nil, nil, fmt.Errorf("%w: the request body is %d bytes, over the limit of %d", broker.ErrEventTooLarge, r.ContentLength, f.maxBody)
	}
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(f.bodyTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, nil, err
	}
	// A body read whole leaves the connection to the next request, which
	// the idle and header timeouts bound: the deadline goes. One that
	// failed keeps it, and the connection closes after the answer: else
	// net/http would wait, with no deadline, to discard the rest of a
	// small body that never comes.
	defer func() {
		if err == nil {
			_ = rc.SetReadDeadline(time.Time{})
		} else {
			w.Header().Set("Connection", "close")
		}
	}()
	var buf []byte
	release = func() { f.budget.give(int64(cap(buf))) }
	for {
		if len(buf) == cap(buf) {
			// A body of known length gets one buffer of its size (and a
			// byte to see its end); one of unknown length doubles from
			// 4 KiB.
			grown := int64(max(2*cap(buf), 4<<10))
			if r.ContentLength >= 0 && cap(buf) == 0 {
				grown = r.ContentLength + 1
			}
			grown = min(grown, f.maxBody+1)
			if !f.budget.take(grown - int64(cap(buf))) {
				release()
				return nil, nil, &LimitError{What: "this server's memory for request bodies in progress is in use", RetryAfter: time.Second}
			}
			next := make([]byte, len(buf), grown)
			copy(next, buf)
			buf = next
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > f.maxBody {
			release()
			return nil, nil, fmt.Errorf("%w: the request body is over the limit of %d bytes", broker.ErrEventTooLarge, f.maxBody)
		}
		if errors.Is(err, io.EOF) {
			return buf, release, nil
		}
		if err != nil {
			release()
			if isTimeout(err) {
				return nil, nil, fmt.Errorf("%w: the request body did not arrive within %v", broker.ErrBadRequest, f.bodyTimeout)
			}
			return nil, nil, fmt.Errorf("%w: reading the request body: %v", broker.ErrBadRequest, err)
		}
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// fail answers a refused REST request the way the gateway answers the
// service's errors.
func (f *restFront) fail(w http.ResponseWriter, r *http.Request, err error) {
	var limit *LimitError
	if errors.As(err, &limit) {
		w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(limit.RetryAfter.Seconds()))))
	}
	_, out := runtime.MarshalerForRequest(f.gw, r)
	restErrorHandler(r.Context(), f.gw, out, w, r, grpcError(err))
}

// restCredentials are a REST caller's credentials: its bearer token.
func restCredentials(r *http.Request) auth.Credentials {
	return auth.Credentials{Token: bearer(r.Header.Get("Authorization"))}
}

// restErrorHandler is the gateway's error handler with two changes: a 401
// carries a proper RFC 6750 challenge (the gateway would put the error
// message in WWW-Authenticate), and a payload nested beyond the decoder's
// limit is named as such.
func restErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if st, ok := status.FromError(err); ok && st.Code() == codes.InvalidArgument && strings.Contains(st.Message(), "exceeded max recursion depth") {
		err = status.Errorf(codes.InvalidArgument, "%v: the payload nests messages more than %d deep (google.protobuf.Any, Struct, Value and ListValue count as messages), the limit", broker.ErrInvalidEvent, maxPayloadDepth)
	}
	if status.Code(err) == codes.Unauthenticated {
		w = challengeWriter{ResponseWriter: w, challenge: bearerChallenge(r.Header.Get("Authorization") != "", status.Convert(err).Message())}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// challengeWriter sets WWW-Authenticate as the status is written, over
// what the gateway set.
type challengeWriter struct {
	http.ResponseWriter
	challenge string
}

func (c challengeWriter) WriteHeader(code int) {
	c.Header().Set("WWW-Authenticate", c.challenge)
	c.ResponseWriter.WriteHeader(code)
}

// bearerChallenge is the WWW-Authenticate value of a 401 (RFC 6750 §3):
// the realm, and for a token that was presented and refused,
// error="invalid_token" with the reason.
func bearerChallenge(presented bool, reason string) string {
	if !presented {
		return `Bearer realm="herald"`
	}
	desc := strings.Map(func(c rune) rune {
		// error_description is %x20-21 / %x23-5B / %x5D-7E.
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return -1
		}
		return c
	}, strings.TrimPrefix(reason, auth.ErrUnauthenticated.Error()+": "))
	return `Bearer realm="herald", error="invalid_token", error_description="` + desc + `"`
}

// bodyBudget bounds the memory held by request bodies being read or
// processed, across all requests.
type bodyBudget struct {
	mu        sync.Mutex
	used, max int64
}

func (b *bodyBudget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return false
	}
	b.used += n
	return true
}

func (b *bodyBudget) give(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
}

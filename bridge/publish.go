package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"github.com/heraldhq/herald/internal/sse"
)

// Limits on the parts of an event besides its payload.
const (
	maxAttributes        = 64
	maxAttributeKeyLen   = 128
	maxIdempotencyKeyLen = 128
	reservedTypePrefix   = "herald."
)

// publisher implements herald.v1.PublisherService.
type publisher struct {
	heraldv1.UnimplementedPublisherServiceServer

	broker        Broker
	types         TypeResolver
	metrics       *metrics
	epoch         string
	maxEventBytes int
	draining      <-chan struct{}
	auth          Authenticator // nil: everything allowed
	limiter       *publishLimiter
}

// access is an authenticated caller.
type access struct {
	creds Credentials
	perms Permissions
}

var openAccess = access{perms: Permissions{Publish: []Pattern{{text: ">", tokens: []string{">"}}}}}

// authenticate reads the caller's credentials from ctx.
func (p *publisher) authenticate(ctx context.Context) (access, error) {
	if p.auth == nil {
		return openAccess, nil
	}
	creds := grpcCredentials(ctx)
	perms, err := p.auth.Authenticate(ctx, creds)
	return access{creds: creds, perms: perms}, err
}

// authorize checks one event against the caller's access and limits.
func (p *publisher) authorize(a access, topic string) error {
	if !a.perms.Expires.IsZero() && time.Now().After(a.perms.Expires) {
		return fmt.Errorf("%w: the token has expired", ErrUnauthenticated)
	}
	if err := authorizePublish(a.creds, a.perms, topic); err != nil {
		return err
	}
	return p.limiter.allow(a.perms.RateKey)
}

// Publish implements herald.v1.PublisherService.
func (p *publisher) Publish(ctx context.Context, req *heraldv1.PublishRequest) (*heraldv1.PublishResponse, error) {
	transport := transportGRPC
	if isGateway(ctx) {
		transport = transportREST
	}
	a, err := p.authenticate(ctx)
	if err == nil {
		err = p.authorize(a, req.GetTopic())
	}
	var resp *heraldv1.PublishResponse
	if err == nil {
		resp, err = p.publish(ctx, req, transport)
	} else {
		p.metrics.countPublish(transport, Code(err).String())
	}
	if err != nil {
		var limit *LimitError
		if errors.As(err, &limit) {
			_ = grpc.SetHeader(ctx, metadata.Pairs("retry-after", fmt.Sprint(int(math.Ceil(limit.RetryAfter.Seconds())))))
		}
		return nil, grpcError(err)
	}
	return resp, nil
}

// PublishStream implements herald.v1.PublisherService: one response per
// request, in order. A rejected event is answered with an error response
// and the stream goes on. When the server drains, the stream ends with
// UNAVAILABLE after the request in hand is answered.
func (p *publisher) PublishStream(stream grpc.BidiStreamingServer[heraldv1.PublishRequest, heraldv1.PublishResponse]) error {
	ctx := stream.Context()
	a, err := p.authenticate(ctx)
	if err != nil {
		return grpcError(err)
	}
	for {
		select {
		case <-p.draining:
			return status.Error(codes.Unavailable, "server is shutting down; reconnect to publish")
		default:
		}
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		err = p.authorize(a, req.GetTopic())
		if errors.Is(err, ErrUnauthenticated) {
			return grpcError(err) // expired: reconnect with a fresh token
		}
		var resp *heraldv1.PublishResponse
		if err == nil {
			resp, err = p.publish(ctx, req, transportStream)
		} else {
			p.metrics.countPublish(transportStream, Code(err).String())
		}
		if err != nil {
			st := status.Convert(grpcError(err))
			e := &heraldv1.PublishError{Code: int32(st.Code()), Message: st.Message()}
			var limit *LimitError
			if errors.As(err, &limit) {
				e.RetryDelay = durationpb.New(limit.RetryAfter)
			}
			resp = &heraldv1.PublishResponse{Error: e}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (p *publisher) publish(ctx context.Context, req *heraldv1.PublishRequest, transport transport) (*heraldv1.PublishResponse, error) {
	start := time.Now()
	ev, err := p.newEvent(req)
	var res PublishResult
	if err == nil {
		res, err = p.broker.Publish(ctx, ev)
	}
	result := "ok"
	switch {
	case err != nil:
		result = Code(err).String()
	case res.Duplicate:
		result = "duplicate"
	}
	p.metrics.countPublish(transport, result)
	if err != nil {
		return nil, err
	}
	p.metrics.publishTime.Observe(time.Since(start).Seconds())
	return &heraldv1.PublishResponse{Id: EventID{Epoch: p.epoch, Seq: res.Seq}.String(), Duplicate: res.Duplicate}, nil
}

// newEvent validates req and turns it into an Event whose payload is
// known to render as JSON, so that nothing a browser receives can fail to
// parse.
func (p *publisher) newEvent(req *heraldv1.PublishRequest) (*Event, error) {
	if err := ValidateTopic(req.GetTopic()); err != nil {
		return nil, err
	}
	payload := req.GetPayload()
	if payload == nil || payload.GetTypeUrl() == "" {
		return nil, fmt.Errorf("%w: payload is missing (a google.protobuf.Any with a type URL)", ErrInvalidEvent)
	}
	ev := &Event{
		Topic:          req.GetTopic(),
		Type:           req.GetType(),
		TypeURL:        payload.GetTypeUrl(),
		Payload:        payload.GetValue(),
		Attributes:     req.GetAttributes(),
		IdempotencyKey: req.GetIdempotencyKey(),
	}
	if ev.Type == "" {
		ev.Type = ev.MessageName()
	}
	if err := sse.ValidEventName(ev.Type); err != nil {
		return nil, fmt.Errorf("%w: type %q %v; event types are up to %d bytes of A-Z a-z 0-9 and -._:", ErrInvalidEvent, printable(ev.Type), err, sse.MaxEventNameLen)
	}
	if strings.HasPrefix(ev.Type, reservedTypePrefix) {
		return nil, fmt.Errorf("%w: type %q uses the reserved prefix %q", ErrInvalidEvent, ev.Type, reservedTypePrefix)
	}
	if len(ev.Attributes) > maxAttributes {
		return nil, fmt.Errorf("%w: %d attributes, more than the limit of %d", ErrInvalidEvent, len(ev.Attributes), maxAttributes)
	}
	for k := range ev.Attributes {
		if k == "" || len(k) > maxAttributeKeyLen || !utf8.ValidString(k) {
			return nil, fmt.Errorf("%w: attribute key %q must be 1 to %d bytes of UTF-8", ErrInvalidEvent, printable(k), maxAttributeKeyLen)
		}
	}
	if len(ev.IdempotencyKey) > maxIdempotencyKeyLen {
		return nil, fmt.Errorf("%w: idempotency_key is %d bytes, longer than %d", ErrInvalidEvent, len(ev.IdempotencyKey), maxIdempotencyKeyLen)
	}
	if n := ev.Size(); n > p.maxEventBytes {
		return nil, fmt.Errorf("%w: event is %d bytes, over the limit of %d bytes", ErrEventTooLarge, n, p.maxEventBytes)
	}
	msg, err := decodePayload(p.types, ev.TypeURL, ev.Payload)
	if err != nil {
		return nil, err
	}
	if err := validatePayload(p.types, msg); err != nil {
		return nil, err
	}
	// Refuse what cannot be rendered as JSON. Most types can always be
	// rendered, or once their timestamps and durations are in range: the
	// hub renders those on first delivery, so an event no one receives
	// is never rendered. The others are rendered here, once.
	if m := msg.ProtoReflect(); !planFor(m.Descriptor()).renders(m) {
		if ev.json, err = renderJSON(p.types, msg, protojson.MarshalOptions{}); err != nil {
			return nil, err
		}
	}
	return ev, nil
}
